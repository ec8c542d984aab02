#!/bin/sh
# List the C sources under $1 (relative to the project root), sorted, one per line.
# src/main.c is the program's entry point and is built apart from the library.
cd "$(dirname "$0")/.." || exit 1
find "$1" -name '*.c' ! -path 'src/main.c' | LC_ALL=C sort
