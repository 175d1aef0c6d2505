#!/bin/sh
# The baseline every image shares.
echo "baseline: users, sshd hardening, time sync"
