"""The label texts VALOR used for its zero-shot teachers, in LLP class order (index 0..24).

Both lists are copied verbatim from VALOR (`utils/clip_preprocess.py`, `utils/clap_preprocess.py`;
see reference-methods §2) — including its typos ("vaccum", "guiter", "a acoustic"). The per-class
pseudo-label thresholds were tuned on scores computed with exactly these strings, so "fixing" a typo
changes the text embedding and silently shifts every score of that class. Do not edit them.

- `CLIP_PROMPTS`: the 25 image-text prompts for CLIP ("A photo of ...").
- `CLAP_LABELS`: the 25 class names VALOR lower-cases and appends to `CLAP_PROMPT_PREFIX`;
  `CLAP_TEXTS` is the resulting list of 25 strings that is actually embedded.
"""
from __future__ import annotations

from avvp.data.classes import LLP_CLASSES, NUM_CLASSES

CLIP_PROMPTS: tuple[str, ...] = (
    "A photo of people talking.",  # Speech
    "A photo of a car.",  # Car
    "A photo of people cheering.",  # Cheering
    "A photo of a dog.",  # Dog
    "A photo of a cat.",  # Cat
    "A photo of frying food.",  # Frying_(food)
    "A photo of people playing basketball.",  # Basketball_bounce
    "A photo of a fire alarm.",  # Fire_alarm
    "A photo of a chainsaw.",  # Chainsaw
    "A photo of a cello.",  # Cello
    "A photo of a banjo.",  # Banjo
    "A photo of people singing.",  # Singing
    "A photo of a chicken or a rooster.",  # Chicken_rooster
    "A photo of a violin.",  # Violin_fiddle
    "A photo of a vaccum cleaner.",  # Vacuum_cleaner  (sic: "vaccum", as in VALOR)
    "A photo of a laughing baby.",  # Baby_laughter
    "A photo of an accordion.",  # Accordion
    "A photo of a lawnmower.",  # Lawn_mower
    "A photo of a motorcycle.",  # Motorcycle
    "A photo of a helicopter.",  # Helicopter
    "A photo of a acoustic guiter.",  # Acoustic_guitar  (sic: "a acoustic guiter", as in VALOR)
    "A photo of a ringing telephone.",  # Telephone_bell_ringing
    "A photo of a crying baby.",  # Baby_cry_infant_cry
    "A photo of a blender.",  # Blender
    "A photo of hands clapping.",  # Clapping
)

# VALOR's CLAP caption = this prefix + the class name lower-cased.
CLAP_PROMPT_PREFIX = "This is a sound of "

CLAP_LABELS: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying (food)", "Basketball bounce", "Fire alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken, rooster", "Violin fiddle", "Vacuum cleaner",
    "Baby laughter", "Accordion", "Lawn mower", "Motorcycle", "Helicopter", "Acoustic guitar",
    "Telephone bell ringing", "Baby cry, infant cry", "Blender", "Clapping",
)

CLAP_TEXTS: tuple[str, ...] = tuple(CLAP_PROMPT_PREFIX + label.lower() for label in CLAP_LABELS)

# Guard the class alignment at import: a missing or extra entry would shift every later class.
assert len(CLIP_PROMPTS) == len(CLAP_LABELS) == len(LLP_CLASSES) == NUM_CLASSES
