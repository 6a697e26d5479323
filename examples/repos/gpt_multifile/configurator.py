"""Poor man's configurator, as nanoGPT has it: `python train.py --key=value` overrides a global of train.py.

Run inside train.py with exec(open('configurator.py').read()), so `globals()` are train.py's."""

import sys
from ast import literal_eval

for arg in sys.argv[1:]:
    assert arg.startswith("--") and "=" in arg, f"expected --key=value, got {arg!r}"
    key, val = arg[2:].split("=", 1)
    assert key in globals(), f"unknown config key: {key}"
    try:
        attempt = literal_eval(val)
    except (SyntaxError, ValueError):
        attempt = val
    assert type(attempt) is type(globals()[key]), f"{key}: {val!r} is not a {type(globals()[key]).__name__}"
    print(f"overriding: {key} = {attempt}")
    globals()[key] = attempt
