"""Clips a recipe's lists name more than once: kept once, and said. A clip listed both for
training and for evaluation is kept for evaluation alone (a leak would inflate the metric)."""
from __future__ import annotations

from c2f.data.prepare.registry import Entry


def unique_entries(entries: list[Entry], problems: list[str], held_out: set[str]) -> list[Entry]:
    """Entries by key, the first of duplicates kept and the others reported; a clip listed for
    training and in a split only evaluation reads (`held_out`) is kept for evaluation alone:
    trained on, it would inflate the eval metric."""
    seen: dict[str, Entry] = {}
    for entry in entries:
        first = seen.get(entry.key)
        if first is None:
            seen[entry.key] = entry
            continue
        if (entry.split in held_out) != (first.split in held_out):
            kept, dropped = (entry, first) if entry.split in held_out else (first, entry)
            seen[entry.key] = kept
            labels = "" if set(entry.labels) == set(first.labels) else \
                f", with other labels ({', '.join(kept.labels)} there)"
            problems.append(f"{entry.where}: {entry.ident} is listed for training "
                            f"({dropped.where}) and for evaluation ({kept.where}{labels}); kept "
                            f"for evaluation alone, as {kept.split} (trained on, it would "
                            "inflate the eval metric)")
            continue
        other = "" if set(entry.labels) == set(first.labels) else \
            f" with other labels ({', '.join(entry.labels)}; first: {', '.join(first.labels)})"
        problems.append(f"{entry.where}: {entry.ident} is listed again{other} (first at "
                        f"{first.where}); kept once, as first listed")
    return list(seen.values())


def held_out(recipe) -> set[str]:
    """The splits only evaluation manifests read (AudioSet's eval; none for ESC-50's folds,
    each of which trains in other manifests)."""
    training = {split for name in recipe.train_manifests
                for split in recipe.manifests.get(name, ())}
    return {split for splits in recipe.manifests.values() for split in splits} - training
