"""The `patchreg` command line: one module per noun. Heavy imports happen inside commands."""
