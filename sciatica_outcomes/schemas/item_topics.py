"""Neutral topic paraphrases of the questionnaire items, per instrument and item code.

Never the licensed wording (ODI, RMDQ): a short paraphrase of what each item asks about, shared by the data
guide (``scoring.questionnaire_text``) and the REDCap dictionary (``schemas.redcap``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ITEM_TOPICS"]

#: Per instrument code, the topic of every item code (a neutral paraphrase, see the module docstring).
ITEM_TOPICS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "odi": MappingProxyType(
            {
                "pain_intensity": "How strong the pain is at the moment",
                "personal_care": "Looking after oneself (washing, dressing)",
                "lifting": "Lifting weights",
                "walking": "How far one can walk",
                "sitting": "How long one can sit",
                "standing": "How long one can stand",
                "sleeping": "Sleep disturbed by pain",
                "sex_life": "Sex life (versions 1.0, 2.0, 2.1a)",
                "employment_homemaking": "Work or homemaking duties (modified ODI, replaces sex life)",
                "social_life": "Social life",
                "travelling": "Travelling",
            }
        ),
        "rmdq": MappingProxyType(
            {
                "1": "Stays at home most of the time",
                "2": "Changes position often to get comfortable",
                "3": "Walks more slowly than usual",
                "4": "Does none of the usual jobs around the house",
                "5": "Uses a handrail to go upstairs",
                "6": "Lies down to rest more often",
                "7": "Needs to hold on to something to get out of an easy chair",
                "8": "Asks other people to do things",
                "9": "Gets dressed more slowly than usual",
                "10": "Stands only for short periods",
                "11": "Avoids bending or kneeling",
                "12": "Finds it hard to get out of a chair",
                "13": "Back hurts almost all the time",
                "14": "Finds it hard to turn over in bed",
                "15": "Appetite is poor",
                "16": "Has trouble putting on socks or stockings",
                "17": "Walks only short distances",
                "18": "Sleeps less well",
                "19": "Needs help to get dressed",
                "20": "Sits down for most of the day",
                "21": "Avoids heavy jobs around the house",
                "22": "Is more irritable with people than usual",
                "23": "Goes upstairs more slowly than usual",
                "24": "Stays in bed most of the time",
            }
        ),
        "sbi": MappingProxyType(
            {
                "leg_pain": "Leg pain",
                "numbness_tingling": "Numbness or tingling in the leg, foot or groin",
                "weakness": "Weakness in the leg or foot",
                "pain_sitting": "Back or leg pain when sitting",
            }
        ),
        "sfi": MappingProxyType(
            {
                "leg_pain": "Leg pain",
                "numbness_tingling": "Numbness or tingling in the leg, foot or groin",
                "weakness": "Weakness in the leg or foot",
                "pain_sitting": "Back or leg pain when sitting",
            }
        ),
    }
)
