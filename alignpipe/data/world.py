"""The built-in task world: a seeded, offline source of prompts, gold scores,
demonstrations, preference pairs and knowledge probes.

The world
---------
Five instruction *families* each carry constraint parameters (the ``spec``)
that a checker can verify exactly:

* ``word_count``  - one sentence about a topic with exactly ``n`` words;
* ``lowercase``   - one sentence about a topic using only lowercase letters;
* ``keyword``     - one sentence about a topic that includes a given word;
* ``list_items``  - ``k`` comma-separated items of a category;
* ``arithmetic``  - a small sum, difference or product, number only.

:func:`gold_score` is the ground-truth reward in [0, 1] (the mean of the
family's sub-scores, see its docstring). :func:`demonstration` writes a short
natural response from word banks that always scores 1.0, which is what SFT
trains on. :func:`make_preference_pairs` pits a demonstration against a
realistic near-miss (or two near-misses against each other) and labels the
pair with a simulated annotator who, with probability ``length_bias``,
prefers the longer response instead of the better one. Corruptions lengthen,
shorten or keep the length, so in the unbiased world length says little
about quality: of unbiased pairs whose responses differ in length, about 49 %
have the longer response chosen (measured over 500 prompts for each of seeds
0-9: 46-51 % per seed, 45-53 % per family). :func:`label_samples` is the same
annotator shown a policy's own samples (on-policy preference labels).
``make_demonstrations(habit=p)`` is a sloppy demonstrator who signs a share p
of its answers off with "I hope you agree." (:func:`with_habit`), an error the
pairs reject, so SFT learns what preferences must unlearn. :func:`make_probes` produces
multiple-choice knowledge questions (capitals, antonyms, number comparisons,
sequences, weekdays, plurals) formatted for log-likelihood scoring by a small
pretrained LM, to measure how much general knowledge alignment costs.

Simplifications
---------------
Responses are built from small hand-written phrase banks, so their variety is
limited (thousands, not millions, of distinct sentences). "Topic present"
is a whole-word match of the topic word, not semantic relevance; list items
count as correct only when they appear verbatim in the category's bank. The
annotator is a single coin flip per pair, not a learned model. Everything is
stdlib-only and deterministic in the seed (per-row generators are derived
with SHA-256, so rows do not depend on Python's hash seed).
"""

import hashlib
import json
import random
import re

FAMILIES: tuple[str, ...] = ("word_count", "lowercase", "keyword", "list_items", "arithmetic")
PROBE_FAMILIES: tuple[str, ...] = (
    "capitals", "antonyms", "comparisons", "sequences", "weekdays", "plurals")

TOPICS: tuple[str, ...] = (
    "cats", "dogs", "rain", "coffee", "music", "gardens", "books", "trains", "bread",
    "rivers", "mountains", "snow", "birds", "tea", "bicycles", "flowers", "oceans",
    "clouds", "forests", "cookies")

# Keywords grouped by how they fit into a sentence.
ADJ_KEYWORDS: tuple[str, ...] = (
    "bright", "gentle", "quiet", "simple", "warm", "happy", "calm", "lovely",
    "peaceful", "cheerful")
TIME_KEYWORDS: tuple[str, ...] = (
    "morning", "evening", "weekend", "summer", "afternoon", "holiday", "winter",
    "night", "autumn", "spring")
KEYWORDS: tuple[str, ...] = ADJ_KEYWORDS + TIME_KEYWORDS
_KEYWORD_TEMPLATES = {
    "adj": ("There is something {kw} about {topic}.", "{Topic} can feel {kw} and familiar.",
            "I always find {topic} {kw} and pleasant.", "{Topic} can make a {kw} day even better."),
    "time": ("{Topic} can make every {kw} feel special.", "I like to enjoy {topic} during a quiet {kw}.",
             "Nothing beats {topic} on a slow {kw}.", "I think about {topic} every {kw}."),
}

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "banana", "cherry", "grape", "mango", "orange", "pear", "peach",
               "plum", "lemon", "kiwi", "strawberry", "pineapple", "watermelon"),
    "colors": ("red", "blue", "green", "yellow", "orange", "purple", "pink", "brown",
               "black", "white", "gray", "navy blue", "light green"),
    "animals": ("dog", "cat", "horse", "cow", "lion", "tiger", "elephant", "rabbit",
                "bear", "wolf", "fox", "deer", "polar bear", "sea lion"),
    "vegetables": ("carrot", "potato", "onion", "broccoli", "spinach", "pea", "cabbage",
                   "lettuce", "cucumber", "celery", "garlic", "sweet potato", "bell pepper"),
    "countries": ("France", "Japan", "Brazil", "Canada", "Mexico", "India", "Italy", "Spain",
                  "Germany", "Egypt", "Kenya", "Norway", "New Zealand", "South Africa"),
    "instruments": ("piano", "guitar", "violin", "drum", "flute", "trumpet", "cello",
                    "harp", "clarinet", "saxophone", "banjo", "harmonica", "French horn"),
    "sports": ("soccer", "tennis", "golf", "basketball", "baseball", "hockey", "rugby",
               "cricket", "swimming", "cycling", "boxing", "volleyball", "table tennis"),
}

# Phrase banks for single sentences: prefix + topic + verb phrase + suffix.
_PREFIXES = ("", "Honestly,", "Clearly,", "Usually,", "I think", "I believe", "To me,",
             "Most days,", "I really think", "It seems that", "In my view,", "I truly believe",
             "In my honest opinion,", "I have always thought", "Most people agree that")
_VERB_PHRASES = (
    "can feel magical", "can be wonderful", "can lift spirits", "can calm nerves",
    "can make anyone smile", "can brighten any room", "can be quite relaxing",
    "can bring real comfort", "can make a day better", "can lift a tired mood",
    "can change how people feel", "can bring back happy memories",
    "can bring a lot of joy", "can fill a room with warmth",
    "can make a gray day brighter", "can teach us to slow down")
_SUFFIXES = ("", "today", "too", "again", "every day", "for me", "these days",
             "in the morning", "for many people", "in any season", "after a long day",
             "on a slow weekend", "in the quiet evening", "for young and old")
_PADDING = ("I hope you agree.", "That is my view.", "Everyone should know this.",
            "It is worth noting.")

_WORD_RE = re.compile(r"[A-Za-z0-9']+")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _words(text: str) -> list[str]:
    """Word tokens of `text` as the checker counts them."""
    return _WORD_RE.findall(text)


def _index_by_length() -> dict[int, list[tuple[str, str, str]]]:
    """(prefix, verb phrase, suffix) combinations keyed by their word count."""
    table: dict[int, list[tuple[str, str, str]]] = {}
    for p in _PREFIXES:
        for v in _VERB_PHRASES:
            for s in _SUFFIXES:
                table.setdefault(len(_words(f"{p} {v} {s}")), []).append((p, v, s))
    return table


_COMBOS = _index_by_length()
_MIN_SENTENCE = min(_COMBOS) + 1
_MAX_SENTENCE = max(_COMBOS) + 1


def _cap(text: str) -> str:
    """`text` with its first character upper-cased."""
    return text[:1].upper() + text[1:]


def _check_family(family: str, allowed: tuple[str, ...] = FAMILIES) -> None:
    """Raise ValueError unless `family` is one of `allowed`."""
    if family not in allowed:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(allowed)}")


def _check_n(n: int) -> None:
    """Raise ValueError for a negative row count."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")


def _row_rng(seed: int, row_id: str, salt: str) -> random.Random:
    """A generator derived from (seed, row id, purpose), independent of row order."""
    digest = hashlib.sha256(f"{seed}|{row_id}|{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _sentence(topic: str, n: int, rng: random.Random, avoid: str = "") -> str:
    """A natural sentence about `topic` with exactly `n` words (n clamped to the bank's range).

    If `avoid` is given, the phrases around the topic never contain that word.
    """
    n = max(_MIN_SENTENCE, min(_MAX_SENTENCE, n))
    combos = [c for c in _COMBOS[n - 1] if not avoid or not _present(avoid, " ".join(c))]
    prefix, verb, suffix = rng.choice(combos)
    return _cap(" ".join(part for part in (prefix, topic, verb, suffix) if part)) + "."


def _other(options, exclude, rng: random.Random):
    """A random element of `options` that is not in `exclude`."""
    return rng.choice([o for o in options if o not in exclude])


# ---------------------------------------------------------------- prompts

def _make_spec(family: str, rng: random.Random) -> dict:
    """Random constraint parameters for one prompt of `family`."""
    if family == "word_count":
        return {"topic": rng.choice(TOPICS), "n": rng.randint(5, 12)}
    if family == "lowercase":
        return {"topic": rng.choice(TOPICS)}
    if family == "keyword":
        return {"topic": rng.choice(TOPICS), "keyword": rng.choice(KEYWORDS)}
    if family == "list_items":
        return {"category": rng.choice(sorted(CATEGORIES)), "k": rng.randint(3, 6)}
    op = rng.choice("+-*")
    if op == "+":
        a, b = rng.randint(1, 30), rng.randint(1, 30)
    elif op == "-":
        a = rng.randint(5, 40)
        b = rng.randint(1, a)
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
    return {"a": a, "op": op, "b": b}


def _instruction(family: str, spec: dict) -> str:
    """The natural-language instruction for a prompt."""
    if family == "word_count":
        return f"Write one sentence about {spec['topic']} using exactly {spec['n']} words."
    if family == "lowercase":
        return f"Write one sentence about {spec['topic']} using only lowercase letters."
    if family == "keyword":
        return f"Write one sentence about {spec['topic']} that includes the word \"{spec['keyword']}\"."
    if family == "list_items":
        return f"List {spec['k']} {spec['category']}, separated by commas."
    return f"What is {spec['a']} {spec['op']} {spec['b']}? Answer with the number only."


def make_prompts(n: int, seed: int, families: tuple[str, ...] = FAMILIES) -> list[dict]:
    """Return `n` prompt rows, cycling through `families` round-robin, deterministic in `seed`.

    Each row is ``{"id", "family", "instruction", "spec"}`` where ``id`` is
    ``f"{family}-{seed}-{i}"`` and ``spec`` is the JSON (sort_keys=True) of the
    constraint parameters. Raises ValueError for n < 0 or an unknown family.
    """
    _check_n(n)
    if not families:
        raise ValueError("families must not be empty")
    for family in families:
        _check_family(family)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        family = families[i % len(families)]
        spec = _make_spec(family, rng)
        rows.append({"id": f"{family}-{seed}-{i}", "family": family,
                     "instruction": _instruction(family, spec),
                     "spec": json.dumps(spec, sort_keys=True)})
    return rows


# ---------------------------------------------------------------- gold

def _parse_spec(spec: str | dict) -> dict:
    """The spec as a dict (accepts its JSON string)."""
    return json.loads(spec) if isinstance(spec, str) else dict(spec)


def _present(word: str, text: str) -> float:
    """1.0 if `word` occurs in `text` as a whole word (case-insensitive), else 0.0."""
    return float(word.lower() in {w.lower() for w in _words(text)})


def _one_sentence(text: str) -> float:
    """1.0 if the stripped text has no . ! ? except possibly as its final character."""
    body = text.strip()
    if body[-1:] in (".", "!", "?"):
        body = body[:-1]
    return float(not re.search(r"[.!?]", body))


def _list_items(text: str) -> list[str]:
    """Comma-separated items of a response (trailing period removed, empties dropped)."""
    body = text.strip()
    if body.endswith("."):
        body = body[:-1]
    return [item.strip() for item in body.split(",") if item.strip()]


def _arith_answer(spec: dict) -> int:
    """The correct result of an arithmetic spec."""
    a, b = int(spec["a"]), int(spec["b"])
    return {"+": a + b, "-": a - b, "*": a * b}[spec["op"]]


def _closeness(got: int, want: int) -> float:
    """max(0, 1 - |got - want| / want)."""
    return max(0.0, 1.0 - abs(got - want) / want)


def _list_score(spec: dict, response: str) -> float:
    """Gold for list_items: mean of count closeness, in-bank fraction, distinctness."""
    items = _list_items(response)
    bank = {item.lower() for item in CATEGORIES[spec["category"]]}
    lowered = [item.lower() for item in items]
    in_bank = sum(item in bank for item in lowered) / len(items) if items else 0.0
    distinct = float(bool(items) and len(set(lowered)) == len(lowered))
    return (_closeness(len(items), int(spec["k"])) + in_bank + distinct) / 3


def _arith_score(spec: dict, response: str) -> float:
    """Gold for arithmetic: 1.0 exact, 0.5 answer appears as a number token, else 0.0."""
    answer = str(_arith_answer(spec))
    body = response.strip()
    if body.endswith("."):
        body = body[:-1]
    if body == answer:
        return 1.0
    return 0.5 if answer in _NUMBER_RE.findall(response) else 0.0


def gold_score(family: str, spec: str | dict, response: str) -> float:
    """Gold score in [0, 1] of `response` for a prompt of `family` with parameters `spec`.

    Words are ``[A-Za-z0-9']+`` tokens; "present" is a case-insensitive
    whole-word match. The score is the mean of the family's sub-scores:

    * word_count: topic present; max(0, 1 - |words - n| / n).
    * lowercase: >= 1 letter and no uppercase letter; topic present; exactly one
      sentence (no . ! ? except as the final character).
    * keyword: keyword present; topic present; at most 25 words.
    * list_items: max(0, 1 - |items - k| / k); fraction of items in the category
      bank (0 if none); all items distinct (0 if none).
    * arithmetic (single-valued): 1.0 if the stripped response without a trailing
      period equals the answer, 0.5 if the answer is a standalone number token,
      else 0.0.
    """
    _check_family(family)
    spec = _parse_spec(spec)
    if family == "word_count":
        return (_present(spec["topic"], response)
                + _closeness(len(_words(response)), int(spec["n"]))) / 2
    if family == "lowercase":
        letters = any(c.isalpha() for c in response) and not any(c.isupper() for c in response)
        return (float(letters) + _present(spec["topic"], response) + _one_sentence(response)) / 3
    if family == "keyword":
        return (_present(spec["keyword"], response) + _present(spec["topic"], response)
                + float(len(_words(response)) <= 25)) / 3
    if family == "list_items":
        return _list_score(spec, response)
    return _arith_score(spec, response)


# ---------------------------------------------------------------- demonstrations

def _keyword_sentence(topic: str, keyword: str, rng: random.Random) -> str:
    """A natural sentence about `topic` that uses `keyword`."""
    kind = "adj" if keyword in ADJ_KEYWORDS else "time"
    template = rng.choice(_KEYWORD_TEMPLATES[kind])
    return template.format(kw=keyword, topic=topic, Topic=_cap(topic))


def _join_items(items: list[str]) -> str:
    """Items as a comma-separated response ending with a period."""
    return _cap(", ".join(items)) + "."


def demonstration(family: str, spec: str | dict, rng: random.Random) -> str:
    """A short natural response built from word banks that satisfies every constraint.

    ``gold_score(family, spec, demonstration(family, spec, rng)) == 1.0`` for every
    valid spec; `rng` picks among the many phrasings.
    """
    _check_family(family)
    spec = _parse_spec(spec)
    if family == "word_count":
        return _sentence(spec["topic"], int(spec["n"]), rng)
    if family == "lowercase":
        return _sentence(spec["topic"], rng.randint(5, 12), rng).lower()
    if family == "keyword":
        return _keyword_sentence(spec["topic"], spec["keyword"], rng)
    if family == "list_items":
        return _join_items(rng.sample(CATEGORIES[spec["category"]], int(spec["k"])))
    return str(_arith_answer(spec))


HABIT = _PADDING[0]  # the sloppy demonstrator's sign-off, "I hope you agree."


def with_habit(family: str, response: str) -> str:
    """`response` signed off with the demonstrator's habit: a second sentence (lowercased for the lowercase family).

    Gold drops in every family but keyword (word count, one lowercase sentence, list items, the bare number); the
    preference pairs' padding near-misses (`_pad`, `_lc_pad`) are the same kind of error.
    """
    return f"{response} {HABIT.lower() if family == 'lowercase' else HABIT}"


def make_demonstrations(prompts: list[dict], seed: int, habit: float = 0.0) -> list[dict]:
    """One SFT row per prompt: ``{"id", "family", "instruction", "spec", "response", "habit"}``.

    Each response has gold 1.0, except that with probability `habit` (drawn per row from its own generator)
    the demonstrator signs it off with "I hope you agree." (`with_habit`; row ``habit`` True): demonstrations that
    carry an error the preference pairs do not, as human demonstrations do. A policy imitating them learns the
    habit, more SFT cannot remove it, and preferences can. The per-row generators depend on (seed, id) only, and
    the responses are the same for every `habit` apart from the sign-off.
    """
    if not 0.0 <= habit <= 1.0:
        raise ValueError(f"habit must be in [0, 1], got {habit!r}")
    rows = []
    for p in prompts:
        rng = _row_rng(seed, p["id"], "demo")
        response = demonstration(p["family"], p["spec"], rng)
        signed = _row_rng(seed, p["id"], "habit").random() < habit
        rows.append({"id": p["id"], "family": p["family"], "instruction": p["instruction"], "spec": p["spec"],
                     "response": with_habit(p["family"], response) if signed else response, "habit": signed})
    return rows


# ---------------------------------------------------------------- corruptions
# Each takes (spec, demo, rng) and returns a realistic near-miss. Per family they
# lengthen, shorten or keep the length, so length is not a proxy for quality.

def _wc_more(spec, demo, rng):
    """Too many words (+1..3) - longer."""
    return _sentence(spec["topic"], int(spec["n"]) + rng.randint(1, 3), rng)


def _wc_fewer(spec, demo, rng):
    """Too few words (-1..3, at least 4) - shorter."""
    n = int(spec["n"])
    return _sentence(spec["topic"], n - min(rng.randint(1, 3), n - _MIN_SENTENCE), rng)


def _wc_off_topic(spec, demo, rng):
    """Right length, wrong topic - length varies either way."""
    return _sentence(_other(TOPICS, {spec["topic"]}, rng), int(spec["n"]), rng)


def _pad(spec, demo, rng):
    """Demo plus a short extra sentence - longer."""
    return f"{demo} {rng.choice(_PADDING)}"


def _lc_caps(spec, demo, rng):
    """Capitalise one to three words - same length."""
    words = demo.split(" ")
    for i in rng.sample(range(len(words)), min(len(words), rng.randint(1, 3))):
        words[i] = _cap(words[i])
    return " ".join(words)


def _lc_sentence_case(spec, demo, rng):
    """Ordinary sentence case, ignoring the instruction - length varies."""
    return _sentence(spec["topic"], rng.randint(5, 10), rng)


def _lc_off_topic(spec, demo, rng):
    """Lowercase sentence about another topic - length varies."""
    return _sentence(_other(TOPICS, {spec["topic"]}, rng), rng.randint(5, 10), rng).lower()


def _lc_pad(spec, demo, rng):
    """Lowercase demo plus a second lowercase sentence - longer."""
    return f"{demo} {rng.choice(_PADDING).lower()}"


def _lc_both(spec, demo, rng):
    """Sentence case and another topic - length varies, two constraints broken."""
    return _sentence(_other(TOPICS, {spec["topic"]}, rng), rng.randint(5, 9), rng)


def _kw_swap(spec, demo, rng):
    """Another keyword in place of the requested one - length varies."""
    pool = ADJ_KEYWORDS if spec["keyword"] in ADJ_KEYWORDS else TIME_KEYWORDS
    return _keyword_sentence(spec["topic"], _other(pool, {spec["keyword"]}, rng), rng)


def _kw_off_topic(spec, demo, rng):
    """Keyword used, but about another topic - length varies."""
    return _keyword_sentence(_other(TOPICS, {spec["topic"]}, rng), spec["keyword"], rng)


def _kw_plain(spec, demo, rng):
    """A short sentence about the topic without the keyword - shorter."""
    return _sentence(spec["topic"], rng.randint(4, 6), rng, avoid=spec["keyword"])


def _kw_long(spec, demo, rng):
    """Demo followed by rambling sentences, over 25 words in all - longer."""
    first = _sentence(spec["topic"], rng.randint(9, 12), rng)
    need = 26 - len(_words(demo)) - len(_words(first))
    return f"{demo} {first} {_sentence(spec['topic'], max(need, 5), rng)}"


def _kw_generic(spec, demo, rng):
    """Sentence about another topic without the keyword - length varies."""
    topic = _other(TOPICS, {spec["topic"]}, rng)
    return _sentence(topic, rng.randint(5, 9), rng, avoid=spec["keyword"])


def _li_more(spec, demo, rng):
    """One item too many - longer."""
    items = _list_items(demo)
    return _join_items(items + [_other(CATEGORIES[spec["category"]], set(items), rng)])


def _li_fewer(spec, demo, rng):
    """One item too few - shorter."""
    return _join_items(_list_items(demo)[:-1])


def _li_wrong(spec, demo, rng):
    """One item from another category - length varies."""
    items = _list_items(demo)
    others = [x for c, bank in CATEGORIES.items() if c != spec["category"] for x in bank
              if x.lower() not in {y.lower() for y in CATEGORIES[spec["category"]]}]
    items[rng.randrange(len(items))] = rng.choice(others).lower()
    return _join_items(items)


def _li_duplicate(spec, demo, rng):
    """One item repeated in place of another - length varies."""
    items = _list_items(demo)
    i, j = rng.sample(range(len(items)), 2)
    items[j] = items[i].lower()
    return _join_items(items)


def _ar_off_by_one(spec, demo, rng):
    """A bare wrong answer, off by one - usually the same length."""
    answer = _arith_answer(spec)
    return str(answer - 1 if answer > 0 and rng.random() < 0.5 else answer + 1)


def _ar_sentence(spec, demo, rng):
    """'The answer is N.' - right number, wrong format, longer."""
    return f"The answer is {_arith_answer(spec)}."


def _ar_equation(spec, demo, rng):
    """'a op b = N' - right number, wrong format, longer."""
    return f"{spec['a']} {spec['op']} {spec['b']} = {_arith_answer(spec)}"


def _ar_wrong_sentence(spec, demo, rng):
    """'The answer is N+-1.' - wrong number, longer."""
    return f"The answer is {_ar_off_by_one(spec, demo, rng)}."


_CORRUPTIONS = {
    "word_count": (_wc_more, _wc_fewer, _wc_fewer, _wc_off_topic, _pad),
    "lowercase": (_lc_caps, _lc_sentence_case, _lc_off_topic, _lc_pad, _lc_both),
    "keyword": (_kw_swap, _kw_off_topic, _kw_plain, _kw_long, _kw_generic),
    "list_items": (_li_more, _li_fewer, _li_fewer, _li_wrong, _li_duplicate, _pad),
    "arithmetic": (_ar_off_by_one, _ar_sentence, _ar_equation, _ar_wrong_sentence, _pad),
}
# Probability that a pair is two corruptions rather than demonstration vs corruption.
_TWO_CORRUPTIONS = {"word_count": 0.3, "lowercase": 0.3, "keyword": 0.3,
                    "list_items": 0.3, "arithmetic": 0.6}


# ---------------------------------------------------------------- preference pairs

def _candidates(family: str, spec: dict, rng: random.Random) -> tuple[str, str]:
    """Two responses of (usually) different gold: demo vs near-miss, or two near-misses."""
    demo = demonstration(family, spec, rng)
    fns = _CORRUPTIONS[family]
    first = rng.choice(fns)(spec, demo, rng)
    if rng.random() >= _TWO_CORRUPTIONS[family]:
        return demo, first
    first_gold = gold_score(family, spec, first)
    for fn in rng.sample(fns, len(fns)):
        second = fn(spec, demo, rng)
        if gold_score(family, spec, second) != first_gold:
            return first, second
    return demo, first


def _annotate(a: str, b: str, gold_a: float, gold_b: float, biased: bool) -> bool:
    """True if the annotator picks `a` over `b` (longer if biased and lengths differ, else gold)."""
    if biased and len(a) != len(b):
        return len(a) > len(b)
    return gold_a > gold_b


def make_preference_pairs(prompts: list[dict], seed: int, length_bias: float = 0.0) -> list[dict]:
    """One preference row per prompt, skipped only if its two candidates tie in gold.

    Row: ``{"id", "family", "instruction", "spec", "chosen", "rejected",
    "chosen_gold", "rejected_gold", "gold_agrees", "length_biased"}``. For each
    pair the annotator draws (from its own generator) whether it is biased, with
    probability `length_bias`; a biased annotator prefers the longer response by
    characters, falling back to gold when lengths are equal, and the row gets
    ``length_biased=True``. Otherwise the higher-gold response is chosen. The
    candidates do not depend on `length_bias`, only the labels do. With
    length_bias=0 every row has gold_agrees True, and about 49 % of the rows
    with unequal lengths have the longer response chosen (46-51 % per seed).
    """
    if not 0.0 <= length_bias <= 1.0:
        raise ValueError(f"length_bias must be in [0, 1], got {length_bias!r}")
    rows = []
    for p in prompts:
        _check_family(p["family"])
        spec = _parse_spec(p["spec"])
        a, b = _candidates(p["family"], spec, _row_rng(seed, p["id"], "pair"))
        gold_a, gold_b = gold_score(p["family"], spec, a), gold_score(p["family"], spec, b)
        biased = _row_rng(seed, p["id"], "annotator").random() < length_bias
        if gold_a == gold_b:
            continue
        if not _annotate(a, b, gold_a, gold_b, biased):
            a, b, gold_a, gold_b = b, a, gold_b, gold_a
        rows.append({"id": p["id"], "family": p["family"], "instruction": p["instruction"],
                     "spec": p["spec"], "chosen": a, "rejected": b, "chosen_gold": gold_a,
                     "rejected_gold": gold_b, "gold_agrees": gold_a > gold_b,
                     "length_biased": biased})
    return rows


def label_samples(prompts: list[dict], samples: list[list[str]], seed: int, length_bias: float = 0.0,
                  golds: list[list[float]] | None = None) -> list[dict]:
    """The annotator's preference over a policy's own samples: one row per prompt whose samples differ in gold.

    prompts: rows with ``instruction``, ``family`` and ``spec``; samples: each prompt's responses (at
    least two). As human labellers rank a model's samples (InstructGPT's comparisons of SFT outputs),
    the annotator is shown the prompt's highest- and lowest-gold samples (the first of equals) and labels
    them as in :func:`make_preference_pairs`: with probability `length_bias` (drawn per prompt from its
    own generator, keyed on the instruction) it prefers the longer response, else the higher-gold one.
    Row: ``{"prompt", "family", "spec", "chosen", "rejected", "chosen_gold", "rejected_gold",
    "gold_agrees", "length_biased"}``; a prompt whose samples all tie in gold gives no row. `golds`: the
    samples' gold scores where the caller already has them (else they are computed here).
    """
    if not 0.0 <= length_bias <= 1.0:
        raise ValueError(f"length_bias must be in [0, 1], got {length_bias!r}")
    if len(prompts) != len(samples):
        raise ValueError(f"{len(prompts)} prompts but {len(samples)} sample lists")
    if golds is None:
        golds = [[gold_score(p["family"], p["spec"], r) for r in responses]
                 for p, responses in zip(prompts, samples, strict=True)]
    rows = []
    for p, responses, scores in zip(prompts, samples, golds, strict=True):
        _check_family(p["family"])
        if len(responses) < 2:
            raise ValueError(f"prompt {p['instruction']!r}: need at least 2 samples to compare, got {len(responses)}")
        hi, lo = scores.index(max(scores)), scores.index(min(scores))
        if scores[hi] == scores[lo]:
            continue
        biased = _row_rng(seed, p["instruction"], "sample-annotator").random() < length_bias
        a, b = responses[hi], responses[lo]
        gold_a, gold_b = scores[hi], scores[lo]
        if not _annotate(a, b, gold_a, gold_b, biased):
            a, b, gold_a, gold_b = b, a, gold_b, gold_a
        rows.append({"prompt": p["instruction"], "family": p["family"], "spec": p["spec"], "chosen": a, "rejected": b,
                     "chosen_gold": gold_a, "rejected_gold": gold_b, "gold_agrees": gold_a > gold_b,
                     "length_biased": biased})
    return rows


# ---------------------------------------------------------------- knowledge probes

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"),
    ("the United Kingdom", "London"), ("Egypt", "Cairo"), ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("India", "New Delhi"), ("Mexico", "Mexico City"),
    ("Argentina", "Buenos Aires"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Austria", "Vienna"), ("Belgium", "Brussels"), ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"),
    ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Cuba", "Havana"), ("Turkey", "Ankara"),
    ("Iran", "Tehran"), ("the Philippines", "Manila"), ("Vietnam", "Hanoi"),
    ("Chile", "Santiago"))

ANTONYMS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("happy", "sad"),
    ("fast", "slow"), ("open", "closed"), ("early", "late"), ("in", "out"),
    ("left", "right"), ("rich", "poor"), ("strong", "weak"), ("tall", "short"),
    ("hard", "soft"), ("wet", "dry"), ("full", "empty"), ("first", "last"), ("win", "lose"),
    ("push", "pull"), ("buy", "sell"), ("love", "hate"), ("top", "bottom"),
    ("black", "white"), ("north", "south"), ("east", "west"), ("true", "false"),
    ("inside", "outside"), ("above", "below"), ("clean", "dirty"), ("thick", "thin"),
    ("loud", "quiet"), ("young", "old"), ("alive", "dead"), ("begin", "end"))
# Pairs in one group are never distractors for each other (e.g. "soft" for "loud").
_ANTONYM_GROUPS: tuple[frozenset, ...] = (
    frozenset({"up", "down", "top", "bottom", "above", "below", "inside", "outside", "in", "out"}),
    frozenset({"first", "last", "begin", "end", "early", "late"}),
    frozenset({"big", "small", "tall", "short", "thick", "thin"}),
    frozenset({"loud", "quiet", "hard", "soft"}),
    frozenset({"left", "right", "north", "south", "east", "west"}))

WEEKDAYS: tuple[str, ...] = (
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# (singular, correct plural, three wrong plurals)
PLURALS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("child", "children", ("childs", "childrens", "childes")),
    ("mouse", "mice", ("mouses", "mices", "meese")),
    ("foot", "feet", ("foots", "feets", "footes")),
    ("tooth", "teeth", ("tooths", "teeths", "toothes")),
    ("man", "men", ("mans", "mens", "mannes")),
    ("woman", "women", ("womans", "womens", "womanes")),
    ("goose", "geese", ("gooses", "geeses", "goosen")),
    ("knife", "knives", ("knifes", "knivs", "knive")),
    ("leaf", "leaves", ("leafs", "leafes", "leavs")),
    ("wolf", "wolves", ("wolfs", "wolfes", "wolvs")),
    ("shelf", "shelves", ("shelfs", "shelfes", "shelvs")),
    ("potato", "potatoes", ("potatos", "potatoe", "potatoies")),
    ("tomato", "tomatoes", ("tomatos", "tomatoe", "tomatoies")),
    ("city", "cities", ("citys", "cityes", "citis")),
    ("baby", "babies", ("babys", "babyes", "babis")),
    ("sheep", "sheep", ("sheeps", "sheepes", "shoop")),
    ("glass", "glasses", ("glasss", "glassies", "glassen")))


def _question(text: str) -> str:
    """Wrap a question for log-likelihood scoring."""
    return f"Question: {text}\nAnswer:"


def _probe_capitals(rng):
    """Capital of a well-known country; 3 other capitals as distractors."""
    country, capital = rng.choice(CAPITALS)
    wrong = rng.sample([c for _, c in CAPITALS if c != capital], 3)
    return f"What is the capital of {country}?", capital, wrong


def _probe_antonyms(rng):
    """Opposite of a common word (either direction); distractors from other pairs."""
    pair = rng.choice(ANTONYMS)
    cue, answer = pair if rng.random() < 0.5 else pair[::-1]
    related = set(pair).union(*(g for g in _ANTONYM_GROUPS if cue in g))
    wrong = rng.sample([w for p in ANTONYMS for w in p if w not in related], 3)
    return f"What is the opposite of \"{cue}\"?", answer, wrong


def _probe_comparisons(rng):
    """Larger/smaller of two two-digit numbers (often digit swaps like 47 vs 74)."""
    if rng.random() < 0.5:
        x, y = rng.sample(range(1, 10), 2)
        a, b = 10 * x + y, 10 * y + x
    else:
        a, b = rng.sample(range(10, 100), 2)
    word = rng.choice(("larger", "smaller"))
    answer = max(a, b) if word == "larger" else min(a, b)
    return f"Which number is {word}: {a} or {b}?", str(answer), [str(a + b - answer)]


def _probe_sequences(rng):
    """Next term of an arithmetic sequence; distractors near the answer."""
    start, step = rng.randint(1, 20), rng.randint(2, 10)
    terms = [start + step * i for i in range(4)]
    answer = start + 4 * step
    wrong = rng.sample([answer + step, answer + 1, answer - 1, terms[-1]], 3)
    shown = ", ".join(map(str, terms))
    return f"What comes next: {shown}, ...?", str(answer), [str(w) for w in wrong]


def _probe_weekdays(rng):
    """Day of the week after a given day; 3 other days as distractors."""
    i = rng.randrange(7)
    answer = WEEKDAYS[(i + 1) % 7]
    wrong = rng.sample([d for d in WEEKDAYS if d not in (answer, WEEKDAYS[i])], 3)
    return f"What day comes after {WEEKDAYS[i]}?", answer, wrong


def _probe_plurals(rng):
    """Plural of an irregular noun; 3 misspelt plurals as distractors."""
    word, answer, wrong = rng.choice(PLURALS)
    return f"What is the plural of \"{word}\"?", answer, list(wrong)


_PROBES = {"capitals": _probe_capitals, "antonyms": _probe_antonyms,
           "comparisons": _probe_comparisons, "sequences": _probe_sequences,
           "weekdays": _probe_weekdays, "plurals": _probe_plurals}


def make_probes(n: int, seed: int, families: tuple[str, ...] = PROBE_FAMILIES) -> list[dict]:
    """Return `n` multiple-choice knowledge probes, cycling `families` round-robin.

    Row: ``{"id", "family", "question", "options", "answer"}``. ``question`` is the
    full context ending in "Answer:" (e.g. "Question: What is the capital of
    France?\\nAnswer:"), ``options`` are continuations with a leading space
    (" Paris"), and ``answer`` indexes the correct option, whose position is
    shuffled. Comparisons have 2 options, every other family 4.
    """
    _check_n(n)
    if not families:
        raise ValueError("families must not be empty")
    for family in families:
        _check_family(family, PROBE_FAMILIES)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        family = families[i % len(families)]
        text, answer, wrong = _PROBES[family](rng)
        options = [f" {answer}"] + [f" {w}" for w in wrong]
        rng.shuffle(options)
        rows.append({"id": f"{family}-{seed}-{i}", "family": family, "question": _question(text),
                     "options": options, "answer": options.index(f" {answer}")})
    return rows
