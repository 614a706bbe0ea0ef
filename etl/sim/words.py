"""Word lists the simulated world draws names, handles and post texts from (fixed, so worlds repeat)."""

from __future__ import annotations

# Handle words: lower-case letters only, so a handle's digits can be parsed back (population.py).
HANDLE_WORDS = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil trent "
    "victor walter yara zoe maple cedar willow aspen birch rowan hazel juniper sage fern moss river brook "
    "storm rain cloud sky star moon sun comet nova orbit pixel byte vector kernel tensor lambda delta "
    "sigma gamma omega alpha beta tango echo fox wolf bear otter heron raven crow finch robin wren lark "
    "swift kestrel falcon lynx panda koala tiger lion zebra bison moose badger hedgehog sparrow pigeon "
    "coffee tea matcha mango lemon lime cherry plum peach apple pear berry cocoa honey pepper ginger "
    "ocean harbor island meadow valley canyon summit ridge forest desert tundra prairie glacier lagoon "
    "writer reader painter coder maker builder dreamer wanderer runner rider sailor pilot baker "
    "quiet bright lucky sunny happy cosmic pixelated analog digital retro neon velvet golden silver "
    "news daily weekly radio studio press journal gazette review notes thoughts posts skeets takes"
).split()

HYPHEN_WORDS = "the-real not-a its-just hello official just ask team".split()

CUSTOM_TLDS = ("com", "net", "org", "dev", "io", "xyz", "me", "art", "blog", "social", "online", "co.uk", "de", "jp")

FIRST_NAMES = (
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Olivia Peggy Rupert Sybil Trent Victor Walter "
    "Yara Zoe Ana Bruno Camila Diego Elena Felipe Hana Kenji Yuki Sakura Haruto Aiko Lena Jonas Mia Noah "
    "Léa Chloé Zoë José María Søren Björn Anaïs François Ümit Åsa Dmitri Olga Priya Arjun Fatima Omar"
).split()

LAST_NAMES = (
    "Smith Jones Brown Garcia Silva Santos Tanaka Suzuki Sato Müller Schmidt Dubois Martin Rossi Novak "
    "Kowalski Johansson Nguyen Kim Park Chen Wang Singh Patel Okafor Mensah O'Brien Da Costa van Dijk"
).split()

NAME_SUFFIXES = ("", "", "", "", " 🦋", " 🌈", " ✨", " 🐈", " (she/her)", " (he/him)", " (they/them)", " 🇧🇷", " 🇯🇵")

DISPLAY_NAMES_ODD = (
    "🦋🦋🦋",
    "天使の羽",
    "Ñandú Ñoño",
    "𝓯𝓪𝓷𝓬𝔂 𝓷𝓪𝓶𝓮",
    "Zalgo Z̷̢a̸l̶g̵o̴",
    "مرحبا بالعالم",
    "שלום עולם",
    "Ελληνικά",
    "Кириллица",
    "👩‍👩‍👧‍👦 family",
)

DESCRIPTIONS = (
    "Just here for the vibes.",
    "Software, coffee, and too many browser tabs.",
    "Photographer. Opinions my own. 📷",
    "Posting about birds, mostly. 🐦",
    "Journalist covering tech and policy.",
    "Artist • commissions open • she/her",
    "Researcher in distributed systems.",
    "日本語と英語でポストします。",
    "Escrevo sobre música e cinema.",
    "Science communicator. 🔬",
)

POST_WORDS = {
    "en": (
        "the a an this that today really just think new good great post thread read watch love hate "
        "weather coffee code bug release feature people time world week morning night music book movie "
        "game cat dog bird photo garden city train bike run walk finally again still never always maybe "
        "honestly wild fun weird tired happy excited wondering about with from into over under after "
        "before because while everyone someone nobody link here there what why how when"
    ).split(),
    "pt": "hoje muito bom dia noite café gato cachorro música filme livro trabalho amigos cidade praia chuva sol "
    "que não sim mais menos sempre nunca talvez".split(),
    "de": "heute sehr gut Tag Nacht Kaffee Katze Hund Musik Film Buch Arbeit Freunde Stadt Regen Sonne "
    "und nicht ja mehr weniger immer nie vielleicht".split(),
    "es": "hoy muy bueno día noche café gato perro música película libro trabajo amigos ciudad lluvia sol "
    "que no sí más menos siempre nunca quizás".split(),
    "fr": "aujourd'hui très bon jour nuit café chat chien musique film livre travail amis ville pluie soleil "
    "que ne pas oui plus moins toujours jamais peut-être".split(),
    "ja": "今日 とても 良い 日 夜 コーヒー 猫 犬 音楽 映画 本 仕事 友達 街 雨 晴れ です ね よ".split(),
}

LANGUAGES = ("en",) * 14 + ("ja", "ja", "pt", "pt", "de", "es", "fr")

EMOJI = ("🦋", "😂", "❤️", "🔥", "✨", "🙏", "👀", "🎉", "😭", "🤔", "☕", "🌧️", "🐈", "📷", "👩‍💻")

HASHTAGS = ("#art", "#photography", "#python", "#postgres", "#music", "#birds", "#news", "#books", "#gamedev")
