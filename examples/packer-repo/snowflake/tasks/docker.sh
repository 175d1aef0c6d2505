#!/bin/sh
echo "docker: engine and compose plugin"
