"""An idea's paraphrases and non-English phrasings, rewritten into the English words the rules read.

The rules match words, so "prune a third of the weights", "smoothing the labels" or "un taux d'apprentissage
plus faible" would reach no rule and the question would be lost. Each rewrite here says one thing the
vocabulary (words.py) already knows in other words; the rules then read the rewritten text as they read the
English keyword. What no rewrite and no rule reads is not guessed at: the coverage check
(agent/plan/coverage.py) lists it as not understood. `canonical` keeps where each rewrite came from, so the
coverage table quotes the idea's own words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# shares of the weights an idea can name in words, as percent
SHARES: dict[str, int] = {
    "a third": 33,
    "one third": 33,
    "half": 50,
    "a half": 50,
    "a quarter": 25,
    "one quarter": 25,
    "two thirds": 67,
    "three quarters": 75,
    "a tenth": 10,
}
_SHARE = rf"(?P<share>{'|'.join(SHARES)}|\d{{1,2}}(?: percent)?)"
_MODEL = r"(?:model|network|net|cnn|mlp|classifier|convnet|lstm)"
# the settings a direction word ("smaller", "plus faible") can qualify
_SETTING = (
    r"(?:the )?(?:learning rate|lr|step size|weight decay|dropout|batch size|width|hidden size|depth|number of "
    r"layers|layers|epochs?|label smoothing|momentum)"
)


def _percent(match: re.Match[str]) -> str:
    share = match.group("share")
    return str(SHARES.get(share, share.split()[0]))


Replacement = str | Callable[[re.Match[str]], str]

# (pattern over normalized text, replacement): paraphrases first, then French, German and Spanish phrasings
REWRITES: tuple[tuple[str, Replacement], ...] = (
    # compression in other words
    (
        rf"(?:prune|pruning|pruned|remove|removing|zero|zeroing|drop|dropping|cut|cutting)(?: out| away)? "
        rf"{_SHARE} of (?:the |its |all )?(?:{_MODEL} s )?(?:weights|parameters|connections)",
        lambda m: f"{_percent(m)} percent sparsity weight pruning",
    ),
    (r"sparsif(?:y|ies|ied|ying)", "sparsity"),
    (
        rf"(?:prune|pruning|pruned)(?: the| a| our| its)? (?P<model>{_MODEL})",
        lambda m: f"weight pruning {m['model']}",
    ),
    (r"quanti[sz](?:e|es|ing)", "quantized"),
    (r"8 bit(?: integers?| weights| ints?)?", "int8"),
    # techniques in other words
    (
        r"smooth(?:ing|ed)? (?:the )?(?:labels|targets)|soft(?:ened)? (?:labels|targets)|label smoothed|"
        r"lissage (?:des |d )?(?:etiquettes|labels)|label ?glattung|glattung (?:der )?(?:labels|etiketten)|"
        r"suavizado (?:de )?(?:las )?etiquetas",
        "label smoothing",
    ),
    (
        r"penali[sz]ing large weights|l2 weight penalty|decroissance (?:des )?poids|gewichtsverfall|"
        r"gewichtsabnahme|decaimiento (?:de )?(?:los )?pesos",
        "weight decay",
    ),
    (r"drop out", "dropout"),
    (
        r"stopping early|stop(?:s|ping)? (?:training )?early|early stop|arret (?:precoce|anticipe)|"
        r"fruh(?:es|zeitiges) (?:stoppen|beenden|abbrechen)|(?:parada|detencion) temprana",
        "early stopping",
    ),
    (r"taux d apprentissage|lern ?rate|(?:tasa|velocidad|ritmo) de aprendizaje", "learning rate"),
    # direction words before a setting: "smaller" there is not a smaller model
    (rf"(?:smaller|reduced|decreased|reducing|decreasing|lowering|lowered)(?= {_SETTING}\b)", "lower"),
    (rf"(?:larger|bigger|increased|increasing|raising|raised|greater)(?= {_SETTING}\b)", "higher"),
    (
        r"plus (?:faible|basse|bas|petit|petite)|moins elevee?|niedriger\w*|kleiner\w*|geringer\w*|"
        r"mas baj[oa]|menor|mas pequen[oa]",
        "lower",
    ),
    (r"plus (?:elevee?|grande?|haute?)|hoher\w*|grosser\w*|mas alt[oa]|mayor", "higher"),
    # margins
    (
        r"sans perdre (?:de |d )?(?:la |l )?(?:precision|exactitude)|sans perte de (?:precision|exactitude)|"
        r"ohne (?:an )?genauigkeit (?:zu )?verlieren|ohne genauigkeitsverlust|sin perder (?:precision|exactitud)",
        "without losing accuracy",
    ),
    # the question's words
    (r"hilft|helfen|hilfreich|aide|aident|aider|ayuda|ayudan|ayudar", "help"),
    (r"verbessert|verbessern|ameliore|ameliorent|ameliorer|mejora|mejoran|mejorar", "improve"),
    (r"schadet|nuit|perjudica", "hurt"),
    (r"besser|meilleure?|mejor", "better"),
    (r"comparer|comparez|vergleiche|vergleichen|comparar|compara", "compare"),
    (r"contre|gegen|gegenuber|frente a|contra", "versus"),
    (r"ou|oder", "or"),
    (r"sans|ohne|sin", "without"),
    (r"avec|mit|con", "with"),
    # budgets, data and models
    (r"versuchen|versuche|durchlaufe|durchlaufen|essais|essai|ensayos|intentos|pruebas", "trials"),
    (r"graines?(?: aleatoires?)?|semillas?(?: aleatorias?)?|zufallsseeds", "seeds"),
    (r"ziffern|chiffres|digitos|cifras", "digits"),
    (r"handgeschrieben\w*|manuscrit\w*|escrit[oa]s a mano", "handwritten"),
    (r"epoques?|epochen|epocas?", "epochs"),
    (r"couches|schichten|capas", "layers"),
    (r"largeur|breite|anchura", "width"),
    (r"taille (?:de |du )?(?:lot|batch)|batchgrosse|tamano (?:de )?lote", "batch size"),
    (r"genauigkeit|exactitud|justesse", "accuracy"),
    (r"temps d entrainement|trainingszeit|trainingsdauer|tiempo de entrenamiento", "training time"),
    (r"plus rapide|schneller|mas rapid[oa]", "faster"),
    (r"modele|modell|modelo", "model"),
    (r"reseau|netzwerk|netz", "network"),
    (r"entrainement|entrenamiento", "training"),
    (r"tabulaires?|tabellarisch\w*|tabulares?", "tabular"),
    (r"donnees|daten|datos", "data"),
)
_COMPILED = tuple((re.compile(rf"(?:{pattern})\b"), replacement) for pattern, replacement in REWRITES)


@dataclass(frozen=True)
class Rewrite:
    """One rewrite in a canonical text: where its words are (`start`, `end`) and the idea's own words."""

    start: int
    end: int
    original: str


def canonical(text: str) -> str:
    """Normalized `text` with every paraphrase rewritten into the vocabulary's words."""
    return read(text)[0]


def read(text: str) -> tuple[str, list[Rewrite]]:
    """Normalized `text` rewritten, and where each rewrite sits in the result. At each word the longest match
    of any rewrite wins, so a whole phrase ("sans perdre de précision") beats its words ("sans")."""
    out: list[str] = []
    rewrites: list[Rewrite] = []
    size = 0
    position = 0
    while position < len(text):
        best: tuple[re.Match[str], Replacement] | None = None
        for pattern, replacement in _COMPILED:
            found = pattern.match(text, position)
            if found and found.end() > position and (best is None or found.end() > best[0].end()):
                best = (found, replacement)
        if best is None:
            end = text.find(" ", position)
            end = len(text) if end < 0 else end + 1
            out.append(text[position:end])
            size += end - position
            position = end
            continue
        found, replacement = best
        new = replacement if isinstance(replacement, str) else replacement(found)
        rewrites.append(Rewrite(size, size + len(new), found.group(0)))
        out.append(new)
        size += len(new)
        position = found.end()
    return "".join(out), rewrites
