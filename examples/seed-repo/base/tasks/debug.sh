#!/bin/bash
set -e

echo "---- debug (the seed's task; on the sandbox it changes nothing)"
