"""A ``random.Random`` whose ``random()`` always returns one value, for tests of code that
flips a coin (STAG4D's nearest-view conditioning)."""

import random


class FixedCoin(random.Random):
    """``random()`` returns ``value``; every other method is the seeded default's."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value
