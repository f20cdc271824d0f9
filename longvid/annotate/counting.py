"""Counting that counts: events grouped by what happens, not by identical wording.

Real narrations and speech almost never repeat word for word ("C opens the fridge", "C opened the
refrigerator door"), so counting identical texts answers "once" nearly always. Two ways to group:

* ``verb_object`` (model-free, the default): each text becomes an *action key*
  ``verb|object``: the narrator tags and the subject are dropped (``#C C``, ``the man X``, ``he``),
  the verb is lemmatised and mapped to a canonical verb (``grabs``, ``takes``, ``picks up`` →
  ``pick``), the object is the words up to the first preposition without determiners, singular,
  with a few synonyms folded (``refrigerator`` → ``fridge``). A text that does not start with a
  verb after its subject ("a red screen with stripes") keys on its content words.
* ``embedding``: texts whose open_clip text embeddings have cosine at least a threshold share a
  group (greedy, in time order, against each group's first text). Only meaningful with trained
  weights: :func:`embedding_groups` refuses random ones.

Occurrences: the events of one group are one *occurrence* when they overlap in time (two
narration passes describing the same moment) or follow each other within ``merge_gap_s`` (10 s
by default) with no other action starting in between: a run of narrations of one ongoing action
("cuts the onion", "slices the onion", "cuts the onion") is one occurrence; the action happens
again after something else happened. The count is the number of occurrences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from longvid.annotate.timeline import EPS, Event

_WORD = re.compile(r"[a-z0-9']+")
_TAG = re.compile(r"#\w+")

# subjects at the start of a narration / description (longest first)
_SUBJECTS = (
    "the camera wearer", "the man x", "the woman x", "the man y", "the woman y", "the person",
    "a person", "the man", "the woman", "a man", "a woman", "someone", "man x", "woman x",
    "c", "he", "she", "they", "i", "we", "you", "person",
)
_SKIP_BEFORE_VERB = {"is", "are", "was", "were", "then", "now", "again", "also", "slowly",
                     "quickly", "still", "just", "carefully", "continues", "starts", "begins",
                     "to", "gently"}
_DETERMINERS = {"a", "an", "the", "some", "his", "her", "their", "its", "my", "your", "this",
                "that", "these", "those", "another", "other", "one", "two", "three", "few",
                "more"}
_PREPOSITIONS = {"of", "from", "on", "in", "into", "with", "to", "at", "onto", "for", "by", "off",
                 "inside", "under", "over", "near", "using", "and", "then", "while", "across",
                 "through", "towards", "toward", "around", "behind", "beside", "out", "up",
                 "down", "as", "before", "after"}
_PARTICLES = ("up", "down", "out", "off", "away", "back", "on", "at", "over", "around")

# canonical verbs: phrase (lemma [+ particle]) → canonical
_VERB_SYNONYMS = {
    "look at": "look", "look": "look", "watch": "look", "stare at": "look", "stare": "look",
    "glance at": "look", "glance": "look", "observe": "look", "see": "look", "view": "look",
    "check": "look",
    "pick up": "pick", "pick": "pick", "grab": "pick", "take": "pick", "lift": "pick",
    "get": "pick", "take out": "pick", "take up": "pick",
    "put": "put", "put down": "put", "place": "put", "set": "put", "set down": "put",
    "drop": "put", "lay": "put", "lay down": "put", "put back": "put", "keep": "put",
    "cut": "cut", "slice": "cut", "chop": "cut",
    "open": "open", "close": "close", "shut": "close",
    "wash": "wash", "rinse": "wash", "clean": "wash", "scrub": "wash",
    "stir": "stir", "mix": "stir", "pour": "pour",
    "turn on": "switch on", "switch on": "switch on", "turn off": "switch off",
    "switch off": "switch off", "throw": "throw", "toss": "throw",
    "walk": "walk", "go": "walk", "move": "move", "hold": "hold", "wipe": "wipe",
    "fold": "fold", "eat": "eat", "drink": "drink", "touch": "touch", "point at": "point",
    "point": "point", "press": "press", "push": "push", "pull": "pull", "turn": "turn",
    "add": "add", "remove": "remove", "peel": "peel", "fry": "fry", "boil": "boil",
}
_IRREGULAR = {"took": "take", "taken": "take", "went": "go", "gone": "go", "held": "hold",
              "threw": "throw", "thrown": "throw", "ate": "eat", "eaten": "eat", "drank": "drink",
              "got": "get", "saw": "see", "seen": "see", "made": "make", "ran": "run",
              "shut": "shut", "put": "put", "cut": "cut", "set": "set", "laid": "lay"}
_OBJECT_SYNONYMS = {"refrigerator": "fridge", "fridge door": "fridge",
                    "refrigerator door": "fridge", "cellphone": "phone", "mobile phone": "phone",
                    "smartphone": "phone", "tap": "faucet", "cupboard": "cabinet"}
_KNOWN_VERBS = {p.split()[0] for p in _VERB_SYNONYMS} | set(_IRREGULAR.values()) | {
    "make", "run", "use", "sit", "stand", "write", "read", "play", "paint", "climb", "dig",
    "cook", "bake", "sew", "tie", "hang", "fill", "empty", "wear", "shake", "spread", "knead",
    "roll", "squeeze", "scroll", "fade", "drift", "bounce"}


def _lemma(word: str, known: set[str] = _KNOWN_VERBS) -> str:
    """Base form of a verb (``cutting`` → ``cut``, ``opened`` → ``open``, ``takes`` → ``take``)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            stem = word[: -len(suffix)]
            if suffix == "es" and not stem.endswith(("s", "sh", "ch", "x", "z", "o")):
                stem = word[:-1]  # "takes" → "take"
            if stem.endswith("i") and suffix in ("es", "ed"):
                return stem[:-1] + "y"  # "carried" → "carry"
            for cand in (stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2]
                         else None):
                if cand and cand in known:
                    return cand
            return stem
    return word


_PLURALS = {"knives": "knife", "leaves": "leaf", "loaves": "loaf", "shelves": "shelf",
            "people": "person", "children": "child", "dishes": "dish", "glasses": "glass"}


def _singular(word: str) -> str:
    if word in _PLURALS:
        return _PLURALS[word]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return _WORD.findall(_TAG.sub(" ", text.lower()).replace("'s", ""))


def _strip_subject(words: list[str]) -> tuple[list[str], bool]:
    for subj in _SUBJECTS:
        parts = subj.split()
        if words[: len(parts)] == parts and len(words) > len(parts):
            return words[len(parts):], True
    return words, False


def action_key(text: str) -> str:
    """The ``verb|object`` key of a text (or ``text|content words`` when it has no verb)."""
    words, had_subject = _strip_subject(_words(text))
    while words and words[0] in _SKIP_BEFORE_VERB:
        words = words[1:]
    if not words:
        return "text|"
    first = _lemma(words[0])
    is_verb = had_subject or first in _KNOWN_VERBS
    if not is_verb:
        content = [_singular(w) for w in words if w not in _DETERMINERS | _PREPOSITIONS]
        return "text|" + " ".join(content)
    rest = words[1:]
    verb = first
    if rest and rest[0] in _PARTICLES and f"{first} {rest[0]}" in _VERB_SYNONYMS:
        verb, rest = f"{first} {rest[0]}", rest[1:]
    verb = _VERB_SYNONYMS.get(verb, _VERB_SYNONYMS.get(first, first))
    obj: list[str] = []
    for w in rest:
        if w in _PREPOSITIONS and obj:
            break
        if w in _DETERMINERS or w in _PREPOSITIONS:
            continue
        obj.append(_singular(w))
    phrase = " ".join(obj)
    phrase = _OBJECT_SYNONYMS.get(phrase, phrase)
    phrase = " ".join(_OBJECT_SYNONYMS.get(w, w) for w in phrase.split())
    return f"{verb}|{phrase}"


def _canon(word: str) -> str:
    """A word in canonical form: lemma, canonical verb, singular, object synonym folded."""
    lemma = _lemma(word)
    if lemma in _VERB_SYNONYMS:
        return _VERB_SYNONYMS[lemma]
    noun = _singular(word)
    return _OBJECT_SYNONYMS.get(noun, noun)


def content_words(text: str) -> set[str]:
    """Canonical content words of a text (no tags, subject, determiners or prepositions)."""
    words, _ = _strip_subject(_words(text))
    skip = _DETERMINERS | _PREPOSITIONS | _SKIP_BEFORE_VERB
    return {_canon(w) for w in words if w not in skip}


def mentions(question: str, text: str, share: float = 0.6) -> bool:
    """Whether ``question`` names the event ``text``: at least ``share`` of the event's content
    words (lemmatised) appear in it, so a paraphrase ("the fridge is opened") still counts."""
    need = content_words(text)
    if not need:
        return False
    have = {_canon(w) for w in _words(question)}
    return len(need & have) >= share * len(need) - 1e-9


@dataclass
class Group:
    """Events that are the same action: their indices (time order) and occurrences."""

    key: str
    events: list[int]
    occurrences: list[tuple[float, float]]

    @property
    def count(self) -> int:
        return len(self.occurrences)


def occurrences(events: Sequence[Event], members: Sequence[int], keys: Sequence[str],
                merge_gap_s: float) -> list[tuple[float, float]]:
    """Occurrences of one group (see the module docstring): ``members`` index ``events``;
    ``keys`` are the group keys of all ``events`` (to see other actions in between)."""
    order = sorted(members, key=lambda i: (events[i].start, events[i].end))
    key = keys[order[0]] if order else ""
    out: list[list[float]] = []
    for i in order:
        e = events[i]
        if out:
            a, b = out[-1]
            between = any(keys[j] != key and a + EPS < events[j].start < e.start - EPS
                          for j in range(len(events)))
            if e.start < b - EPS or (e.start <= b + merge_gap_s + EPS and not between):
                out[-1][1] = max(b, e.end)
                continue
        out.append([e.start, e.end])
    return [(round(a, 3), round(b, 3)) for a, b in out]


def groups_from_keys(events: Sequence[Event], keys: Sequence[str],
                     merge_gap_s: float) -> list[Group]:
    """Groups of events with equal keys, in order of their first event."""
    members: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k and not k.endswith("|"):
            members.setdefault(k, []).append(i)
    return [Group(k, idx, occurrences(events, idx, keys, merge_gap_s))
            for k, idx in members.items()]


def verb_object_groups(events: Sequence[Event], merge_gap_s: float) -> list[Group]:
    return groups_from_keys(events, [action_key(e.text) for e in events], merge_gap_s)


def embedding_keys(embeddings: np.ndarray, threshold: float) -> list[str]:
    """Group keys from unit-norm text embeddings [N, D]: greedy, each text joins the first group
    whose first text has cosine >= ``threshold`` with it, else starts a new group."""
    heads: list[int] = []
    keys = []
    for i in range(len(embeddings)):
        sims = [float(embeddings[h] @ embeddings[i]) for h in heads]
        best = int(np.argmax(sims)) if sims else -1
        if best >= 0 and sims[best] >= threshold:
            keys.append(f"emb|{heads[best]}")
        else:
            heads.append(i)
            keys.append(f"emb|{i}")
    return keys


def embedding_groups(events: Sequence[Event], encode: Callable[[list[str]], np.ndarray],
                     threshold: float, merge_gap_s: float, random_weights: bool) -> list[Group]:
    """Groups by text-embedding similarity; ``encode`` gives unit-norm rows [N, D]."""
    from longvid.errors import ConfigError

    if random_weights:
        raise ConfigError("annotate.qa.count_method embedding needs trained open_clip weights "
                          "(annotate.embed.pretrained); random text embeddings group nothing "
                          "meaningful: use verb_object")
    if not events:
        return []
    keys = embedding_keys(np.asarray(encode([e.text for e in events])), threshold)
    return groups_from_keys(events, keys, merge_gap_s)
