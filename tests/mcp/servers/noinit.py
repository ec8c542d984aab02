"""Reads requests and never answers initialize."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcplib  # noqa: E402

mcplib.Server("noinit", mcplib.standard_tools(), answer_initialize=False).serve()
