"""A generated task whose salient words are known: `dataset=cue_words` (the quickstart).

Each input is a run of ordinary filler words with one or a few *cue words* planted at random
positions. Every class owns a few cue words; the label is the class of the planted cues (with
`label_noise`, a share of labels is replaced by another class: those cannot be predicted). The
cue-word assignment is fixed by `task_seed` (the "knowledge"), the sampled examples by
`sample_seed`; both are deterministic. Nothing marks a cue word as special except its link to
the label, so a model has to learn which words matter from labelled examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Ordinary words; none is a stop-word of kdlight.teacher.selection, so every one stays eligible.
WORDS = """
apple river table window garden pencil bottle letter forest mountain candle basket button ladder
blanket pocket carpet kettle mirror pillow rocket saddle tunnel wallet anchor barrel cabin castle
cotton desert engine feather fountain glove hammer harbor island jacket kitten lemon magnet meadow
needle orange paddle parrot pepper pirate planet puzzle rabbit ribbon saucer shadow silver spider
sponge statue sugar summer thunder ticket tiger tomato tower trumpet turtle valley velvet violin
wagon walnut whistle winter wizard yellow zipper bridge camera carrot circle cloud copper dragon
drawer eagle falcon fence fiddle flower frost galaxy ginger goblin guitar helmet honey hunter
igloo insect jelly jungle kayak kernel lantern leopard lizard locket marble meteor mitten monkey
muffin napkin nectar noodle oyster palace panda parcel pebble pickle pigeon piano pirate plum
pony quartz quiver radar raisin raven riddle robin saddle salmon scarf shovel sketch sleigh
socket sparrow spoon squid stamp stove sunset swamp tablet tavern teapot tent thimble thistle
tractor trophy tulip umbrella vessel village volcano waffle walrus weasel wheat willow yacht
acorn badge beacon biscuit bucket buffalo cactus canyon cargo cedar cherry chimney cobweb comet
compass cricket crystal cushion dagger daisy dolphin donkey dune emerald ferry fig flute fossil
gadget garlic geyser glacier gravel hedge hornet iceberg ivory jasmine juniper kiwi lagoon
lobster maple mustard oasis orchid otter paprika peacock pearl pelican penguin pine prism pumpkin
""".split()

CLASS_NAMES = ("north", "east", "south", "west", "red", "green", "blue", "gold")


@dataclass(frozen=True)
class CueWordsSpec:
    n_classes: int = 4
    cues_per_class: int = 6
    filler_vocab_size: int = 150
    min_words: int = 20  # filler words per example
    max_words: int = 30
    min_cues: int = 1  # planted cue words per example
    max_cues: int = 2
    label_noise: float = 0.0
    task_seed: int = 0

    def __post_init__(self) -> None:
        words = len(dict.fromkeys(WORDS))
        checks = [
            ("n_classes", 2 <= self.n_classes <= len(CLASS_NAMES), f"an integer in 2..{len(CLASS_NAMES)}"),
            ("cues_per_class", self.cues_per_class >= 1, "an integer >= 1"),
            ("filler_vocab_size", self.filler_vocab_size >= 1, "an integer >= 1"),
            ("min_words", 1 <= self.min_words <= self.max_words, "1 <= min_words <= max_words"),
            ("min_cues", 1 <= self.min_cues <= self.max_cues, "1 <= min_cues <= max_cues"),
            ("label_noise", 0.0 <= self.label_noise < 1.0, "a number with 0 <= label_noise < 1"),
            (
                "filler_vocab_size",
                self.n_classes * self.cues_per_class + self.filler_vocab_size <= words,
                f"n_classes * cues_per_class + filler_vocab_size <= {words} (the word list)",
            ),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(f"dataset.{name}={getattr(self, name)!r} is not accepted; use {accepted}")

    def vocabulary(self) -> tuple[dict[str, list[str]], list[str]]:
        """(cue words per class, filler words), drawn from the word list by task_seed."""
        words = list(dict.fromkeys(WORDS))
        random.Random(f"cue-words-{self.task_seed}").shuffle(words)
        n_cues = self.n_classes * self.cues_per_class
        cues = {
            CLASS_NAMES[c]: words[c * self.cues_per_class : (c + 1) * self.cues_per_class] for c in range(self.n_classes)
        }
        return cues, words[n_cues : n_cues + self.filler_vocab_size]


def generate_rows(spec: CueWordsSpec, n: int, seed: int, split: str) -> list[dict]:
    """n rows {"id", "text", "label", "cues"}; the same (spec, n, seed, split) gives the same rows,
    and a larger n extends a smaller one (the first rows stay the same)."""
    cues_by_class, fillers = spec.vocabulary()
    classes = list(cues_by_class)
    rng = random.Random(f"{seed}-{split}")
    rows = []
    for i in range(n):
        label = rng.choice(classes)
        words = rng.choices(fillers, k=rng.randint(spec.min_words, spec.max_words))
        planted = rng.choices(cues_by_class[label], k=rng.randint(spec.min_cues, spec.max_cues))
        for cue in planted:
            words.insert(rng.randint(0, len(words)), cue)
        if spec.label_noise and rng.random() < spec.label_noise:
            label = rng.choice([c for c in classes if c != label])
        rows.append({"id": f"cue-{split}-{i}", "text": " ".join(words), "label": label, "cues": planted})
    return rows
