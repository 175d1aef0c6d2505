#!/bin/sh
echo "debug: image contents summary"
