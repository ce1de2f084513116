"""docs/integrating.md (section 7) prints these modules as they are, so a developer who
copies them from the guide gets what the end-to-end test runs."""
import pathlib
import re

import pytest

HERE = pathlib.Path(__file__).resolve().parent
GUIDE = HERE.parents[2] / "docs" / "integrating.md"
MODULES = ["handoff_ids.py", "handoff_seal.py", "handoff_publish.py", "handoff_verify.py",
           "handoff_read.py", "handoff_export.py"]


def guide_modules() -> dict[str, str]:
    """Each ```python block whose paragraph starts by naming a file: `handoff_x.py` …"""
    found, named, block = {}, None, None
    for line in GUIDE.read_text(encoding="utf-8").splitlines(keepends=True):
        if block is not None:
            if line.startswith("```"):
                found[named], named, block = "".join(block), None, None
            else:
                block.append(line)
        elif line.startswith("```python") and named:
            block = []
        elif m := re.match(r"`(handoff_\w+\.py)`", line):
            named = m[1]
    return found


@pytest.mark.parametrize("module", MODULES)
def test_the_guide_prints_the_module_as_it_is(module: str):
    printed = guide_modules().get(module)
    assert printed is not None, f"{GUIDE} shows no block for {module}"
    assert printed == (HERE.parent / module).read_text(encoding="utf-8")
