"""The 25 LLP event classes in the order every AVVP codebase uses (index 0..24)."""

LLP_CLASSES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
)
NUM_CLASSES = len(LLP_CLASSES)
# every LLP clip is 10 s, parsed as ten 1-second segments; segment t covers [t, t+1) s
NUM_SEGMENTS = 10
CLASS_INDEX = {name: i for i, name in enumerate(LLP_CLASSES)}
