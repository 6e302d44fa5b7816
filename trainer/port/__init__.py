"""Porting a patch onto a new base version: portability statistics and the no-op check."""
