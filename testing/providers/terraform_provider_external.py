"""STAND-IN for hashicorp/external (data source `external`), for machines with no registry.

Not the real provider: a Python re-implementation (PyPI `tf` package, plugin protocol 6) of the
data source's documented behaviour, so that tests run real Terraform against the real bridge:

- `program` is run without a shell; null and empty elements are dropped; argv[0] is looked up on
  PATH. `working_dir` defaults to Terraform's working directory. The program inherits the
  environment.
- `query` (map of strings) is written to stdin as one JSON object with sorted keys; null elements
  are dropped; with no query the program gets `{}`.
- Non-zero exit: "External Program Execution Failed", with the program's stderr as the message.
- Success: stdout must be one JSON object of string values, nothing after it, or the read fails
  with "Unexpected External Program Results".
- No timeout (as in provider versions >= 2.2.3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from tf import provider as p
from tf import schema, types
from tf.iface import Config, ReadDataContext, State
from tf.runner import run_provider
from tf.utils import Diagnostics

DOCS = "https://www.terraform.io/internals/debugging"


class ExternalDataSource(p.DataSource):
    @classmethod
    def get_name(cls) -> str:
        return ""  # the provider prefix alone: `external`

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("program", types.List(types.String()), required=True),
                schema.Attribute("working_dir", types.String(), optional=True),
                schema.Attribute("query", types.Map(types.String()), optional=True),
                schema.Attribute("result", types.Map(types.String()), computed=True),
                schema.Attribute("id", types.String(), computed=True),
            ]
        )

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        program = [a for a in (config.get("program") or []) if a]
        if not program:
            ctx.diagnostics.add_error(
                "External Program Missing",
                "The data source was configured without a program to execute. Verify the "
                "configuration contains at least one non-empty value.",
            )
            return None
        query = {k: v for k, v in (config.get("query") or {}).items() if v is not None}
        payload = json.dumps(query, sort_keys=True, separators=(",", ":"))
        executable = shutil.which(program[0])
        if executable is None:
            ctx.diagnostics.add_error(
                "External Program Lookup Failed",
                "The data source received an unexpected error while attempting to parse the "
                "query. The data source received an unexpected error while attempting to find "
                f"the program.\n\nThe program must be accessible according to the platform "
                f"where Terraform is running.\n\nIf the expected program should be automatically "
                f"found on the platform where Terraform is running, ensure that the program is "
                f"in an expected directory. On Unix-based platforms, these directories are "
                f"typically searched based on the '$PATH' environment variable.\n\n"
                f'Program: {program[0]}\nError: exec: "{program[0]}": executable file not '
                "found in $PATH",
            )
            return None
        proc = subprocess.run(
            [executable, *program[1:]],
            input=payload.encode(),
            capture_output=True,
            cwd=config.get("working_dir") or None,
            env=os.environ.copy(),
            check=False,
        )
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            if stderr == "":
                message = f"exit status {proc.returncode}"
            else:
                message = stderr
            ctx.diagnostics.add_error(
                "External Program Execution Failed",
                "The data source received an unexpected error while attempting to execute the "
                f"program.\n\nProgram: {executable}\nError Message: {message}\nState: exit "
                f"status {proc.returncode}",
            )
            return None
        try:
            result = json.loads(proc.stdout.decode())
            if not isinstance(result, dict) or not all(isinstance(v, str) for v in result.values()):
                raise ValueError("json: cannot unmarshal into Go value of type map[string]string")
        except (ValueError, UnicodeDecodeError) as exc:
            ctx.diagnostics.add_error(
                "Unexpected External Program Results",
                "The data source received unexpected results after executing the program.\n\n"
                "Program output must be a JSON encoded map of string keys and string values.\n\n"
                "If the error is unclear, the output can be viewed by enabling Terraform's "
                f"logging at TRACE level. Terraform documentation on logging: {DOCS}\n\n"
                f"Program: {executable}\nResult Error: {exc}",
            )
            return None
        return {
            "program": config.get("program"),
            "working_dir": config.get("working_dir"),
            "query": config.get("query"),
            "result": result,
            "id": "-",
        }


class ExternalProvider(p.Provider):
    def full_name(self) -> str:
        return "registry.terraform.io/hashicorp/external"

    def get_model_prefix(self) -> str:
        return "external"

    def get_provider_schema(self, diags: Diagnostics) -> schema.Schema:
        return schema.Schema(attributes=[])

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        pass

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        pass

    def get_data_sources(self) -> list[type[p.DataSource]]:
        return [ExternalDataSource]

    def get_resources(self) -> list[type[p.Resource]]:
        return []


if __name__ == "__main__":
    run_provider(ExternalProvider(), sys.argv)
