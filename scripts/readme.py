"""README.md from nbs/index.ipynb, the README's source: `python scripts/readme.py` writes it, `--check` says whether it is up to date.

`make readme` runs it; `make check-sync` (CI) runs the check; `pokecard bench --readme README.md` writes its tables into the notebook
and then the README again, so the two never disagree."""
import argparse, sys
from pathlib import Path
from pokecard.bench import readme_from_notebook, readme_source, readme_text

ROOT = Path(__file__).resolve().parents[1]
SOURCE, README = ROOT/"nbs"/"index.ipynb", ROOT/"README.md"

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is not what nbs/index.ipynb gives")
    parser.add_argument("--force", action="store_true", help="replace a README.md that was not written from the notebook")
    args = parser.parse_args(argv)
    if not args.check and README.is_file() and readme_source(README) is None and not args.force:
        print(f"{README.name} was not written from {SOURCE.relative_to(ROOT)} (its first line does not say so): it would be lost; "
              "move it into the notebook first, or pass --force", file=sys.stderr)
        return 2
    if not args.check:
        readme_from_notebook(SOURCE, README)
        print(f"wrote {README.name} from {SOURCE.relative_to(ROOT)}")
        return 0
    if README.is_file() and README.read_text(encoding="utf-8") == readme_text(SOURCE, README):
        print(f"{README.name} is up to date with {SOURCE.relative_to(ROOT)}")
        return 0
    print(f"{README.name} differs from what {SOURCE.relative_to(ROOT)} gives: edit the notebook, then run `make readme`", file=sys.stderr)
    return 1

if __name__ == "__main__": sys.exit(main())
