"""Titles and descriptions of synthetic items, built from per-topic theme words (:mod:`twotower_hgnn.data.synthetic`).

Topic ``k`` uses theme ``k % len(THEMES)``; most words come from the item's theme and some (``noise``)
from a random other theme, so a sentence encoder sees real but imperfect topic signal.
"""

from __future__ import annotations

import numpy as np

# Theme vocabularies: topic k uses theme k % len(THEMES). Real English words so that a sentence
# encoder places same-theme items close together.
THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "true crime",
        (
            "murder",
            "detective",
            "investigation",
            "killer",
            "police",
            "trial",
            "evidence",
            "mystery",
            "suspect",
            "forensic",
            "case",
            "crime",
        ),
    ),
    (
        "history",
        (
            "empire",
            "war",
            "ancient",
            "kings",
            "revolution",
            "medieval",
            "battle",
            "dynasty",
            "rome",
            "century",
            "archive",
            "chronicle",
        ),
    ),
    (
        "science",
        (
            "physics",
            "universe",
            "quantum",
            "biology",
            "evolution",
            "experiment",
            "cosmos",
            "genetics",
            "chemistry",
            "research",
            "atoms",
            "discovery",
        ),
    ),
    (
        "business",
        (
            "startup",
            "investing",
            "markets",
            "leadership",
            "money",
            "economy",
            "entrepreneur",
            "strategy",
            "finance",
            "stocks",
            "company",
            "profit",
        ),
    ),
    (
        "self help",
        (
            "habits",
            "mindset",
            "motivation",
            "confidence",
            "productivity",
            "success",
            "happiness",
            "growth",
            "focus",
            "goals",
            "discipline",
            "wellbeing",
        ),
    ),
    (
        "comedy",
        (
            "jokes",
            "laughs",
            "funny",
            "sketch",
            "standup",
            "hilarious",
            "parody",
            "banter",
            "satire",
            "comedian",
            "humor",
            "prank",
        ),
    ),
    (
        "sports",
        (
            "football",
            "soccer",
            "basketball",
            "league",
            "coach",
            "championship",
            "match",
            "athlete",
            "goal",
            "tennis",
            "season",
            "team",
        ),
    ),
    (
        "fantasy",
        (
            "dragons",
            "magic",
            "wizard",
            "kingdom",
            "sword",
            "quest",
            "elves",
            "sorcery",
            "prophecy",
            "realm",
            "castle",
            "spell",
        ),
    ),
    (
        "romance",
        (
            "love",
            "heart",
            "passion",
            "wedding",
            "kiss",
            "desire",
            "affair",
            "sweetheart",
            "romantic",
            "longing",
            "couple",
            "summer",
        ),
    ),
    (
        "health",
        (
            "nutrition",
            "fitness",
            "diet",
            "sleep",
            "exercise",
            "medicine",
            "doctor",
            "body",
            "wellness",
            "healing",
            "running",
            "vitamins",
        ),
    ),
    (
        "technology",
        (
            "software",
            "computers",
            "artificial",
            "intelligence",
            "internet",
            "coding",
            "robots",
            "data",
            "gadgets",
            "silicon",
            "startups",
            "algorithms",
        ),
    ),
    (
        "politics",
        (
            "election",
            "government",
            "democracy",
            "policy",
            "parliament",
            "president",
            "campaign",
            "senate",
            "debate",
            "voters",
            "law",
            "diplomacy",
        ),
    ),
    (
        "music",
        (
            "guitar",
            "album",
            "songs",
            "band",
            "concert",
            "rock",
            "jazz",
            "melody",
            "singer",
            "rhythm",
            "vinyl",
            "hiphop",
        ),
    ),
    (
        "food",
        (
            "cooking",
            "recipes",
            "kitchen",
            "chef",
            "baking",
            "restaurant",
            "flavor",
            "wine",
            "dinner",
            "spices",
            "bread",
            "cuisine",
        ),
    ),
    (
        "travel",
        (
            "journey",
            "adventure",
            "islands",
            "mountains",
            "backpacking",
            "cities",
            "voyage",
            "explore",
            "beaches",
            "passport",
            "road",
            "expedition",
        ),
    ),
    (
        "horror",
        (
            "ghost",
            "haunted",
            "terror",
            "nightmare",
            "monster",
            "zombie",
            "curse",
            "darkness",
            "vampire",
            "fear",
            "scream",
            "demon",
        ),
    ),
    (
        "science fiction",
        (
            "spaceship",
            "galaxy",
            "aliens",
            "future",
            "android",
            "planet",
            "starship",
            "cyborg",
            "colony",
            "warp",
            "time",
            "mars",
        ),
    ),
    (
        "parenting",
        (
            "children",
            "baby",
            "family",
            "mothers",
            "fathers",
            "toddler",
            "school",
            "teenagers",
            "parents",
            "kids",
            "bedtime",
            "nursery",
        ),
    ),
    (
        "religion",
        (
            "faith",
            "prayer",
            "church",
            "spiritual",
            "bible",
            "soul",
            "meditation",
            "god",
            "sermon",
            "belief",
            "worship",
            "grace",
        ),
    ),
    (
        "philosophy",
        (
            "ethics",
            "stoicism",
            "truth",
            "existence",
            "reason",
            "morality",
            "consciousness",
            "socrates",
            "logic",
            "virtue",
            "meaning",
            "wisdom",
        ),
    ),
    (
        "nature",
        (
            "forest",
            "wildlife",
            "ocean",
            "animals",
            "birds",
            "climate",
            "rivers",
            "plants",
            "ecology",
            "wolves",
            "garden",
            "earth",
        ),
    ),
    (
        "film",
        (
            "movies",
            "cinema",
            "director",
            "actors",
            "hollywood",
            "screenplay",
            "oscars",
            "trailer",
            "blockbuster",
            "scenes",
            "studio",
            "critics",
        ),
    ),
    (
        "psychology",
        (
            "brain",
            "emotions",
            "behavior",
            "therapy",
            "memory",
            "anxiety",
            "personality",
            "trauma",
            "mind",
            "cognitive",
            "relationships",
            "stress",
        ),
    ),
    (
        "language learning",
        (
            "spanish",
            "vocabulary",
            "grammar",
            "french",
            "lessons",
            "pronunciation",
            "fluent",
            "phrases",
            "german",
            "conversation",
            "words",
            "italian",
        ),
    ),
)
_GENERIC = ("the", "story", "inside", "secret", "world", "life", "guide", "daily", "show", "voices", "hour", "tales")


def _pick(words: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn word of each row's theme."""
    return words[rows, rng.integers(0, words.shape[1], size=rows.shape[0])]


def _texts(
    rng: np.random.Generator, item_topic: np.ndarray, n_ab: int, noise: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Titles and descriptions from topic words (vectorised string ops)."""
    n = item_topic.shape[0]
    words = np.array([w for _, w in THEMES], dtype=object).astype(str)  # [n_themes, 12]
    theme = item_topic % len(THEMES)

    def draw() -> np.ndarray:  # a word of the item's theme, or (noise) of a random theme
        rows = np.where(rng.random(n) < noise, rng.integers(0, len(THEMES), n), theme)
        return _pick(words, rows, rng)

    generic = np.array(_GENERIC)[rng.integers(0, len(_GENERIC), n)]
    title = np.char.add(
        np.char.add(np.char.add(np.char.capitalize(generic), " "), np.char.capitalize(draw())),
        np.char.add(" and ", draw()),
    )
    genre_name = np.array([g for g, _ in THEMES])[theme]
    kind = np.where(np.arange(n) < n_ab, "An audiobook", "A podcast")
    desc = np.char.add(np.char.add(kind, " about "), np.char.add(draw(), ", "))
    desc = np.char.add(np.char.add(desc, draw()), np.char.add(" and ", draw()))
    desc = np.char.add(np.char.add(desc, ". A "), np.char.add(genre_name, " listen on "))
    desc = np.char.add(np.char.add(desc, draw()), ".")
    return title, desc
