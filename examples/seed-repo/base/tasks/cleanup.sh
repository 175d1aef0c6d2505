#!/bin/bash
set -e

echo "---- cleanup (the seed's task; on the sandbox it changes nothing)"
