#!/bin/bash
set -e

echo "---- baseline (the seed's task; on the sandbox it changes nothing)"
