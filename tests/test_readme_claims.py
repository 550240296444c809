"""The README's verdict table says what the ablation table it cites says: counts and losses derived from it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| rival | clean | PGD | search loses (clean; PGD) | under the pooled rule alone (clean; PGD) |"
SECTION = "## Verdicts under both rules"  # the claim's count (results/PROTOCOL.md, amendment 9)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def readme_claim(readme: str) -> tuple[Path, dict[str, list[str]]]:
    """The results file the README's verdict table cites (the last ablation link before it) and its rows."""
    start = readme.index(HEADER)
    links = re.findall(r"\((results/ablation[\w]*\.md)\)", readme[:start])
    assert links, "the verdict table must follow a link to the ablation table it restates"
    rows = {}
    for line in readme[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rival, clean, pgd, losses, pooled_alone = _cells(line)
        named = re.search(r"`(\w+)`", rival)
        rows[named.group(1) if named else "best baseline"] = [clean, pgd, losses, pooled_alone]
    return ROOT / links[-1], rows


def _names(cells: list[list[str]]) -> str:
    """Per metric, the (model, target) cells named, clean; PGD ("none" when neither has any)."""
    return "; ".join(", ".join(names) or "-" for names in cells) if any(cells) else "none"


def table_claim(table: str) -> dict[str, list[str]]:
    """Per rival: clean and PGD wins-ties-losses under both rules, the (model, target) cells search loses, and those
    a win or a loss under the pooled rule alone (with its letter), from the both-rules glance table."""
    section = table.split(SECTION)[1].splitlines()
    first = next(i for i, line in enumerate(section) if line.startswith("|"))
    lines = []
    for line in section[first:]:  # the glance table: the section's first run of table lines
        if not line.startswith("|"):
            break
        lines.append(line)
    header, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    tally = next(row for row in body if "wins-ties-losses" in row[0])
    out = {}
    for column, name in enumerate(header):
        if not name.startswith("vs "):
            continue
        lost, pooled_alone = [[], []], [[], []]
        for row in body:
            if row is tally:
                continue
            cell = f"{row[0]} {row[1].split()[0]}"
            for metric, verdict in enumerate(row[column].split(" / ")):
                if verdict == "L":
                    lost[metric].append(cell)
                elif verdict.startswith("("):
                    pooled_alone[metric].append(f"{cell} {verdict.strip('()')}")
        clean, pgd = tally[column].split(" / ")
        out[name[3:]] = [clean, pgd, _names(lost), _names(pooled_alone)]
    return out


def test_the_readme_verdicts_are_the_ablation_tables():
    source, claimed = readme_claim((ROOT / "README.md").read_text())
    assert claimed == table_claim(source.read_text())


def test_the_check_catches_a_changed_count_a_missing_loss_or_a_missing_pooled_verdict():
    table = (ROOT / "results" / "ablation_val.md").read_text()
    truth = table_claim(table)
    assert truth["oneshot_search"][0] == "0-12-2" and "vgg11_bn 0.3" in truth["oneshot_search"][2]
    both_row = "| vgg11_bn | 0.3 of macs | 3 | T / T | L / L |"
    assert table.count(both_row) == 1  # the both-rules table's row (the pooled table has T* there)
    flipped = table.replace(both_row, "| vgg11_bn | 0.3 of macs | 3 | T / T | T / L |")
    assert table_claim(flipped)["oneshot_search"][2] != truth["oneshot_search"][2]
    pooled_alone = "| mobilenetv2 | 0.3 of macs | 3 | W / (W) | (L*) / (L) |"
    unmarked = table.replace(pooled_alone, "| mobilenetv2 | 0.3 of macs | 3 | W / (W) | T / (L) |")
    assert "mobilenetv2 0.3 L*" in truth["oneshot_search"][3]
    assert table_claim(unmarked)["oneshot_search"][3] != truth["oneshot_search"][3]
    # the pooled rule's glance table is not the claim's count
    pooled_row = "| vgg11_bn | 0.3 of macs | 3 | T / T* | L / L |"
    assert table_claim(table.replace(pooled_row, "| vgg11_bn | 0.3 of macs | 3 | W / W | W / W |")) == truth


OTHER_HEADER = "| rival | APGD | corruption | AUROC digits | AUROC flipped | AUROC noise |"


def _rows_after(text: str, header: str) -> dict[str, list[str]]:
    """The table starting at ``header``: per rival (its `name`, or "best baseline"), its counts."""
    rows = {}
    for line in text[text.index(header) :].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rival, *counts = _cells(line)
        named = re.search(r"`?(\w+)`?", rival)
        rows["best baseline" if "best" in rival else named.group(1)] = counts
    return rows


def test_the_readme_other_metrics_are_the_ablation_tables():
    readme = (ROOT / "README.md").read_text()
    source, _ = readme_claim(readme)
    table = source.read_text()
    section = table.split("## Other metrics at a glance")[1]
    assert _rows_after(readme, OTHER_HEADER) == _rows_after(section, OTHER_HEADER)
