"""Run by tests/test_distributed.py under torchrun: trains the config given as a JSON file."""

import json
import sys

import transferlm

if __name__ == "__main__":
    transferlm.train(json.loads(open(sys.argv[1]).read()))
