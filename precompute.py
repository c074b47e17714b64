"""Precompute OpenEDS for training (the command; the library is training/precompute.py).

    python precompute.py --help
"""

from training.precompute import main

if __name__ == "__main__":
    raise SystemExit(main())
