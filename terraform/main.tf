locals {
  # The images this deployment uses. The snowflake's parent (base) comes from the catalog; the
  # bridge builds it first when needed, and concurrent resolves of it build it once.
  definitions = ["base", "snowflake"]
}

module "images" {
  source   = "../modules/ami_chain"
  for_each = toset(local.definitions)

  definition      = each.key
  repo_dir        = var.repo_dir
  commit          = var.commit
  build_phase     = var.build_phase
  bridge_command  = var.bridge_command
  manifest_bucket = var.manifest_bucket
}

module "launch_template" {
  source = "../modules/launch_template"

  name_prefix   = "snowflake-"
  image_id      = module.images["snowflake"].ami_id
  instance_type = var.instance_type
  tags          = { Definition = "snowflake", Fingerprint = module.images["snowflake"].fingerprint }
}

module "deployment_manifest" {
  source = "../modules/ami_manifest"

  bucket     = var.manifest_bucket
  key        = "deployments/${var.deployment}/amis.json"
  deployment = var.deployment
  images = {
    for name, image in module.images : name => {
      ami_id        = image.ami_id
      fingerprint   = image.fingerprint
      parent_ami_id = image.parent_ami_id
      manifest_uri  = image.manifest_uri
      git_commit    = image.git_commit
    }
  }
}
