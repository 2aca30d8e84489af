"""How a synthetic scene is laid out: `SceneLayout` and the two layouts eoid uses.

A layout says how many people a scene holds, how tall they are, how often a loose
object nobody touches is added, whether the people stand in columns on one ground line,
and which verbs imply another label. FREE is the world the synthetic teacher was
trained on; QUICKSTART stands people in columns and labels carrying as holding too, for
the quickstart's tiny student. scenes.py draws a scene by a layout; world.py and
`eoid synth` pick one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneLayout:
    """Where and how many people a scene holds. The default is the world the teacher was
    trained on.

    `slots` stands the people side by side on one ground line, person k of n centred in
    the k-th of n equal columns (small jitter) with its object on the side away from its
    neighbour, instead of anywhere in the image: the same poses, objects and verbs, but
    a layout a tiny DETR-style student learns to localise within a CPU minute budget
    (the quickstart's world). A person that does not fit its slot after a few shrinks is
    placed freely.

    `implied` adds labels, never pixels: with ("carry", "hold"), a carrying pair is
    labelled hold as well, as most HICO-DET pairs carry several verbs (carrying a
    suitcase is holding it). Under UA such a pair then keeps a seen label, so the
    student learns to find it and only the teacher can say it is carried: the regime in
    which EoID distils unseen verbs on HICO-DET. The quickstart's world uses it; the
    teacher's web data keeps one verb per pair.
    """

    people: tuple[float, ...] = (0.45, 0.4, 0.15)  # probability of 1, 2, 3, ... people
    # person height range, share of the image side
    height: tuple[float, float] = (0.4, 0.58)
    # chance of one object nobody touches
    loose_rate: float = 0.35
    # people on a ground line in columns (see above)
    slots: bool = False
    # (verb, also): a `verb` pair is labelled `also` too
    implied: tuple[tuple[str, str], ...] = ()


FREE = SceneLayout()
QUICKSTART = SceneLayout(
    people=(0.5, 0.5),
    height=(0.48, 0.58),
    loose_rate=0.35,
    slots=True,
    implied=(("carry", "hold"),),
)
