"""Print one of README.md's two opening commands: `start` (the first sh block) or `test` (the second)."""

import re
import sys
from pathlib import Path

blocks = re.findall(r"```sh\n(.*?)\n```", Path(__file__).resolve().parent.parent.joinpath("README.md").read_text())
print(blocks[{"start": 0, "test": 1}[sys.argv[1]]].strip())
