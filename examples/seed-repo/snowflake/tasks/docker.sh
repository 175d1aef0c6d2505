#!/bin/bash
set -e

echo "---- install Docker (the seed's task; on the sandbox it changes nothing)"
