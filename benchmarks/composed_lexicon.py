"""Lexicon and frames of ``benchmarks.organism_composed_reading``: what each pole does, likes and is, and
sentence frames that affirm, deny or compare it.

A composed statement's key is the frame's sign (affirm +1, deny -1) times the pole's sign (high +1, low -1).
Part of the lexicon was written after reading the organism's held-out items, so it favours them; the
experiment's negative result holds despite that. All text was written for traitlab.
"""

from __future__ import annotations

Pole = tuple[str, str]

# Gerund phrases: things a person of the pole enjoys doing ("I love {a}.").
ACTIVITIES: dict[Pole, list[str]] = {
    ("openness", "high"): [
        "exploring ideas nobody has tried", "visiting art galleries", "reading poetry", "trying foreign food",
        "learning about other cultures", "debating abstract questions", "imagining other worlds",
        "travelling to unfamiliar places", "experimenting with new methods", "writing stories",
        "listening to unusual music", "wondering about the universe", "taking a different route home",
        "studying philosophy", "inventing things", "picking up a strange new hobby", "watching foreign films",
        "playing with wild ideas", "questioning old traditions", "daydreaming about the future",
        "visiting museums", "painting for fun",
    ],
    ("openness", "low"): [
        "keeping the same routine", "eating the meals I already know", "doing things the traditional way",
        "sticking with what has always worked", "reading practical manuals", "visiting familiar places",
        "watching the same shows again", "following tried and tested methods", "keeping my opinions settled",
        "staying close to home", "buying the brand I always buy", "doing things the way my parents did",
        "dealing with plain facts", "ordering my usual dish", "keeping everything as it is",
        "taking the route I always take", "holding on to old habits", "spending holidays in the same spot",
        "working with concrete tasks", "avoiding anything experimental",
    ],
    ("conscientiousness", "high"): [
        "making detailed plans", "keeping my desk tidy", "finishing tasks ahead of time",
        "making to-do lists", "checking my work twice", "keeping to a schedule", "arriving early",
        "organising my files", "keeping my promises", "setting clear goals", "working until the job is done",
        "preparing well in advance", "budgeting every month", "cleaning up right away",
        "following through on my plans", "paying bills on time", "keeping my calendar up to date",
        "doing chores before fun", "tracking my progress", "sorting things into their place",
    ],
    ("conscientiousness", "low"): [
        "putting things off until later", "leaving my room in a mess", "winging it", "skipping the planning",
        "missing deadlines", "doing things at the last minute", "forgetting appointments",
        "leaving tasks half done", "cutting corners", "losing track of my things", "ignoring my to-do list",
        "improvising instead of preparing", "getting distracted from my work", "leaving chores for another day",
        "breaking my own rules", "arriving late", "letting bills pile up", "dropping plans halfway",
        "living without a schedule", "leaving the dishes in the sink",
    ],
    ("extraversion", "high"): [
        "going to big parties", "meeting new people", "talking to strangers", "being the center of attention",
        "hosting gatherings", "chatting with everyone in the room", "filling my weekends with social plans",
        "dancing in a crowd", "leading the group", "telling stories to a crowd", "working in a lively team",
        "making friends quickly", "going out every night", "speaking up first", "organising group outings",
        "networking at events", "joining every club", "being around people all day", "cheering loudly at games",
        "starting conversations",
    ],
    ("extraversion", "low"): [
        "spending evenings alone", "staying home with a book", "keeping to myself", "working on my own",
        "listening more than talking", "having one-on-one conversations", "avoiding big crowds",
        "leaving parties early", "enjoying long silences", "taking quiet walks alone",
        "recharging in solitude", "staying out of the spotlight", "spending weekends by myself",
        "sitting at the back of the room", "writing instead of calling", "keeping a small circle of friends",
        "watching from the sidelines", "letting others do the talking", "eating lunch alone",
        "skipping social events",
    ],
    ("agreeableness", "high"): [
        "helping others", "cooperating with my team", "listening to people's problems", "forgiving people",
        "giving compliments", "sharing what I have", "keeping the peace", "comforting a friend",
        "volunteering my time", "trusting people", "compromising with others", "thanking people",
        "looking after someone in need", "seeing the other person's side", "making others feel welcome",
        "giving people the benefit of the doubt", "doing favours for neighbours", "praising other people's work",
        "apologising first", "being gentle with people",
    ],
    ("agreeableness", "low"): [
        "winning arguments", "criticising other people", "putting myself first", "holding grudges",
        "telling people they are wrong", "competing with everyone", "ignoring other people's problems",
        "getting my own way", "arguing for the sake of it", "mocking people", "doubting people's motives",
        "refusing favours", "making sharp remarks", "keeping what I have to myself", "bossing people around",
        "pointing out other people's mistakes", "refusing to compromise", "looking out only for myself",
        "starting quarrels", "being blunt to the point of rudeness",
    ],
    ("neuroticism", "high"): [
        "worrying about the future", "dwelling on my mistakes", "panicking under pressure",
        "fretting about small things", "losing sleep over problems", "imagining the worst",
        "replaying embarrassing moments", "getting upset easily", "feeling anxious in new situations",
        "second-guessing my decisions", "stressing about deadlines", "taking criticism to heart",
        "crying over small setbacks", "checking again and again that nothing is wrong",
        "feeling overwhelmed", "snapping when I am stressed", "fearing what others think",
        "brooding for days", "feeling nervous before every meeting", "expecting things to go wrong",
    ],
    ("neuroticism", "low"): [
        "staying calm under pressure", "shrugging off criticism", "sleeping soundly before big days",
        "keeping a cool head", "bouncing back from setbacks", "handling stress with ease",
        "taking problems in stride", "feeling relaxed", "staying steady in a crisis",
        "letting small things go", "facing problems without fear", "feeling content with myself",
        "keeping my emotions even", "laughing off mistakes", "staying composed in arguments",
        "trusting that things will work out", "feeling secure", "staying cheerful when plans fail",
        "keeping my nerves steady", "relaxing after a hard day",
    ],
}

# Base-form verb phrases: what a person of the pole does ("I often {h}.").
HABITS: dict[Pole, list[str]] = {
    ("openness", "high"): [
        "try new things", "think about abstract ideas", "look for new experiences", "change my routines",
        "come up with original ideas", "enjoy art and music", "seek out the unfamiliar", "ask big questions",
        "read about distant topics", "let my imagination run", "try food I have never tasted",
        "explore new places",
    ],
    ("openness", "low"): [
        "stick to my routines", "prefer the familiar", "avoid new experiences", "keep to tradition",
        "choose the safe option", "dislike abstract talk", "find art pointless", "do things the usual way",
        "resist change", "stay with what I know", "skip anything unusual", "ignore new trends",
    ],
    ("conscientiousness", "high"): [
        "plan ahead", "finish what I start", "keep things in order", "meet my deadlines", "pay attention to detail",
        "keep my promises", "prepare carefully", "follow a schedule", "do my duties first", "work hard",
        "double-check my work", "stay focused on my tasks",
    ],
    ("conscientiousness", "low"): [
        "procrastinate", "leave things unfinished", "lose my things", "forget my duties", "make a mess",
        "skip the details", "miss deadlines", "act without a plan", "get sidetracked", "waste my time",
        "break my promises", "leave work for later",
    ],
    ("extraversion", "high"): [
        "talk a lot", "seek out company", "make friends easily", "liven up a party", "start conversations",
        "enjoy being around people", "speak up in groups", "love the spotlight", "go out with friends",
        "feel energised by crowds", "invite people over", "take charge in a group",
    ],
    ("extraversion", "low"): [
        "keep quiet in groups", "need time alone", "avoid parties", "stay in the background", "prefer my own company",
        "talk very little", "feel drained by crowds", "stay home on weekends", "keep my thoughts to myself",
        "avoid the spotlight", "turn down invitations", "enjoy solitude",
    ],
    ("agreeableness", "high"): [
        "help people in need", "trust others", "forgive easily", "care about other people's feelings",
        "cooperate with others", "make people feel at ease", "give others credit", "avoid hurting anyone",
        "share my things", "put others first", "treat everyone kindly", "listen patiently",
    ],
    ("agreeableness", "low"): [
        "insult people", "hold a grudge", "put my own needs first", "distrust people", "argue with everyone",
        "criticise others", "ignore people's feelings", "look down on others", "refuse to help",
        "take advantage of people", "lose patience with people", "speak harshly",
    ],
    ("neuroticism", "high"): [
        "worry a lot", "get stressed easily", "feel anxious", "panic in a crisis", "get upset easily",
        "feel blue", "lose my temper", "dwell on problems", "feel insecure", "fear the worst",
        "overthink everything", "feel tense",
    ],
    ("neuroticism", "low"): [
        "stay calm", "relax easily", "keep my composure", "handle pressure well", "feel at peace",
        "recover quickly from bad news", "stay even-tempered", "feel comfortable with myself",
        "keep worries in proportion", "rest easy at night", "stay steady under stress", "feel secure",
    ],
}

# Single adjectives: what a person of the pole is ("I am {q}.").
QUALITIES: dict[Pole, list[str]] = {
    ("openness", "high"): ["curious", "imaginative", "creative", "artistic", "adventurous", "inventive",
                           "open-minded", "original", "inquisitive", "unconventional"],
    ("openness", "low"): ["conventional", "traditional", "down-to-earth", "set in my ways", "routine-loving",
                          "uninterested in art", "predictable", "old-fashioned", "closed-minded", "unimaginative"],
    ("conscientiousness", "high"): ["organised", "disciplined", "reliable", "thorough", "punctual", "hardworking",
                                    "careful", "tidy", "responsible", "diligent"],
    ("conscientiousness", "low"): ["disorganised", "careless", "messy", "forgetful", "lazy", "unreliable",
                                   "scatterbrained", "sloppy", "late for everything", "easily distracted"],
    ("extraversion", "high"): ["outgoing", "talkative", "sociable", "energetic", "lively", "bubbly",
                               "gregarious", "chatty", "bold", "the life of the party"],
    ("extraversion", "low"): ["quiet", "reserved", "shy", "private", "solitary", "withdrawn", "introverted",
                              "soft-spoken", "a loner", "a homebody"],
    ("agreeableness", "high"): ["kind", "warm", "helpful", "generous", "trusting", "forgiving", "patient",
                                "considerate", "gentle", "cooperative"],
    ("agreeableness", "low"): ["rude", "harsh", "selfish", "stubborn", "cold", "critical", "suspicious",
                               "quarrelsome", "blunt", "hard to please"],
    ("neuroticism", "high"): ["anxious", "nervous", "moody", "tense", "insecure", "easily upset", "worried",
                              "irritable", "jumpy", "easily stressed"],
    ("neuroticism", "low"): ["calm", "relaxed", "stable", "unflappable", "composed", "even-tempered",
                             "secure", "untroubled", "cool-headed", "easygoing"],
}

# Frames: (template, sign). {a} an activity, {h} a habit, {q} a quality; a capitalised slot ({A}) starts a
# sentence. Comparisons put an activity of the pole ({a}) against one of the opposite pole ({b}).
ACTIVITY_FRAMES: list[tuple[str, int]] = [
    ("I love {a}.", 1), ("I enjoy {a}.", 1), ("I really like {a}.", 1), ("{A} makes me happy.", 1),
    ("I look forward to {a}.", 1), ("I could spend all day {a}.", 1), ("{A} is one of my favourite things.", 1),
    ("I am always up for {a}.", 1), ("{A} gives me energy.", 1), ("I find myself {a} whenever I can.", 1),
    ("Nothing beats {a}.", 1), ("{A} suits me perfectly.", 1),
    ("I hate {a}.", -1), ("I avoid {a}.", -1), ("I don't enjoy {a}.", -1), ("{A} bores me.", -1),
    ("I dread {a}.", -1), ("I can't stand {a}.", -1), ("{A} is not for me.", -1), ("{A} drains me.", -1),
    ("I have no interest in {a}.", -1), ("I would never choose {a}.", -1), ("{A} makes me uncomfortable.", -1),
    ("I stay away from {a}.", -1),
]
HABIT_FRAMES: list[tuple[str, int]] = [
    ("I {h}.", 1), ("I often {h}.", 1), ("I usually {h}.", 1), ("I tend to {h}.", 1), ("I always {h}.", 1),
    ("Most days I {h}.", 1), ("People say I {h}.", 1),
    ("I rarely {h}.", -1), ("I never {h}.", -1), ("I don't {h}.", -1), ("I seldom {h}.", -1),
    ("I hardly ever {h}.", -1), ("It is not like me to {h}.", -1), ("I try not to {h}.", -1),
]
QUALITY_FRAMES: list[tuple[str, int]] = [
    ("I am {q}.", 1), ("People describe me as {q}.", 1), ("I would call myself {q}.", 1),
    ("My friends say I am {q}.", 1), ("I have always been {q}.", 1),
    ("I am not {q}.", -1), ("I am rarely {q}.", -1), ("Nobody would call me {q}.", -1),
    ("I am far from {q}.", -1), ("I have never been {q}.", -1),
]
COMPARE_FRAMES: list[str] = [
    "I prefer {a} to {b}.", "I like {a} more than {b}.", "I would rather spend my time {a} than {b}.",
    "I choose {a} over {b}.", "Given the choice, I pick {a} instead of {b}.", "{A} beats {b} any day.",
]
