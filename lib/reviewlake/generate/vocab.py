"""Word lists for the sample generator: sentiment by star level, neutral story lines, products."""
from __future__ import annotations

# Phrase templates by sentiment level (1 = worst, 5 = best). Slots: {adj} level adjective,
# {noun} product noun, {n} small number, {time} time unit.
SENTIMENT_TEMPLATES: dict[int, list[str]] = {
    1: [
        "this is the most {adj} {noun} i have ever bought", "complete waste of money",
        "it broke after {n} {time}", "do not buy this {noun}", "returned it right away",
        "{adj} quality from start to finish", "stopped working after {n} {time}",
        "i want my money back", "zero stars if i could", "the {noun} arrived {adj} and unusable",
        "customer service never answered", "absolutely {adj}, avoid it",
        "fell apart the first time i used it", "total junk", "{adj}. just {adj}",
        "worst purchase i have made in years", "it never worked at all",
    ],
    2: [
        "not worth the price", "the {noun} feels {adj}", "had high hopes but it was {adj}",
        "works sometimes but mostly {adj}", "would not buy again",
        "somewhat {adj} and not what i expected", "the quality is {adj} for this price",
        "it does not do what the description says", "i expected more from this {noun}",
        "{adj} design and the parts do not fit", "it is usable but {adj}",
        "lasted only {n} {time} before problems", "below average and {adj}",
        "the instructions were {adj} and confusing", "too {adj} to recommend",
    ],
    3: [
        "it is {adj} for the price", "does the job i guess", "nothing special but {adj}",
        "has some pros and cons", "{adj} but could be better", "mixed feelings about this {noun}",
        "it is an {adj} {noun}, no more no less", "some things are good, some are not",
        "middle of the road", "i am neither happy nor unhappy with it",
        "it works as expected, {adj} overall", "three stars seems fair",
        "fine for occasional use", "not bad, not great", "an {adj} choice if you are on a budget",
    ],
    4: [
        "{adj} {noun} overall", "works well for me", "pretty {adj} and does what it says",
        "a few minor issues but {adj}", "would recommend with small reservations",
        "happy with this {noun}", "{adj} value for the money", "good quality, fast shipping",
        "i like it a lot", "very {adj}, only a small flaw", "solid {noun}, would buy again",
        "does the job well", "better than i expected", "four stars because of a minor issue",
        "really {adj} for everyday use",
    ],
    5: [
        "absolutely {adj}", "best {noun} i have ever owned", "highly recommend this {noun}",
        "exceeded my expectations", "five stars", "love it", "my whole family loves it",
        "{adj} quality and fast shipping", "could not be happier with this {noun}",
        "simply {adj}", "worth every penny", "i would buy it again in a heartbeat",
        "{adj} in every way", "the best purchase this year", "{adj}, {adj}, {adj}",
    ],
}

SENTIMENT_ADJECTIVES: dict[int, list[str]] = {
    1: ["terrible", "awful", "useless", "horrible", "worthless", "defective", "broken",
        "pathetic", "dreadful", "shoddy"],
    2: ["poor", "flimsy", "mediocre", "cheap", "underwhelming", "disappointing", "subpar",
        "weak", "lackluster", "inferior"],
    3: ["okay", "average", "decent", "fine", "acceptable", "ordinary", "passable",
        "reasonable", "standard", "fair"],
    4: ["good", "solid", "nice", "pleasant", "reliable", "sturdy", "useful", "handy",
        "comfortable", "dependable"],
    5: ["excellent", "amazing", "perfect", "fantastic", "outstanding", "wonderful", "superb",
        "awesome", "brilliant", "flawless"],
}

HEADLINES: dict[int, list[str]] = {
    1: ["One Star", "Terrible", "Do not buy", "Waste of money", "Junk", "Broke quickly"],
    2: ["Two Stars", "Disappointed", "Not great", "Meh", "Could be better", "Poor quality"],
    3: ["Three Stars", "OK", "Average", "It's fine", "Decent", "Mixed feelings"],
    4: ["Four Stars", "Good", "Pretty good", "Nice", "Works well", "Happy with it"],
    5: ["Five Stars", "Great product", "Love it!", "Excellent", "Perfect", "Highly recommend"],
}

NEUTRAL_TEMPLATES: list[str] = [
    "i bought this {noun} for my {person}", "it arrived on {day}",
    "i have been using it for {n} {time}", "the package came with {accessory}",
    "my {person} uses it every day", "the color is {color}", "it is {size} than i thought",
    "i ordered the {size2} one", "shipping took {n} days", "i read the reviews before buying",
    "compared to my old {noun} it is different", "i use it mostly on weekends",
    "the box was a bit dented", "it took {n} minutes to set up",
    "i got it as a gift for {day}", "we keep it in the {room}",
    "i needed a new {noun} after moving", "the manual is {n} pages long",
    "it weighs about {n} pounds", "my {person} picked it out", "i ordered it on {day} morning",
    "it replaced a {noun} i had for years", "the {noun} fits in the {room}",
    "i also bought the {accessory}", "we have had it since last {season}",
]

FILLERS: dict[str, list[str]] = {
    "person": ["wife", "husband", "son", "daughter", "mother", "father", "friend", "sister",
               "brother", "grandson", "granddaughter", "roommate", "boss", "neighbor"],
    "day": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
            "christmas", "a birthday", "thanksgiving"],
    "time": ["days", "weeks", "months", "uses", "hours"],
    "accessory": ["batteries", "a charger", "a carrying case", "a cable", "spare parts",
                  "a user guide", "a warranty card", "an adapter", "extra filters"],
    "color": ["black", "white", "blue", "red", "silver", "green", "gray", "pink", "brown"],
    "size": ["smaller", "bigger", "lighter", "heavier", "thinner", "larger"],
    "size2": ["small", "medium", "large", "extra large", "standard", "compact"],
    "room": ["kitchen", "garage", "bedroom", "office", "living room", "car", "basement"],
    "season": ["spring", "summer", "fall", "winter"],
}

GENERIC_NOUNS = ["product", "item", "thing", "unit", "purchase"]

# Product nouns per category; categories not listed use GENERIC_NOUNS.
CATEGORY_NOUNS: dict[str, list[str]] = {
    "Books": ["book", "novel", "paperback", "cookbook", "biography"],
    "Digital_Ebook_Purchase": ["ebook", "story", "novel", "kindle book"],
    "Wireless": ["phone case", "charger", "headset", "screen protector"],
    "PC": ["keyboard", "mouse", "monitor", "hard drive", "laptop stand"],
    "Home": ["blanket", "pillow", "lamp", "curtain", "rug"],
    "Apparel": ["shirt", "jacket", "dress", "sweater", "pair of jeans"],
    "Health & Personal Care": ["vitamin", "toothbrush", "scale", "supplement"],
    "Beauty": ["shampoo", "lotion", "lipstick", "hair dryer", "perfume"],
    "Video DVD": ["dvd", "movie", "box set", "season"],
    "Mobile_Apps": ["app", "game", "widget"],
    "Kitchen": ["blender", "knife set", "coffee maker", "pan", "toaster"],
    "Toys": ["toy", "puzzle", "doll", "board game", "lego set"],
    "Sports": ["yoga mat", "water bottle", "tent", "dumbbell set"],
    "Music": ["album", "cd", "record", "soundtrack"],
    "Shoes": ["pair of shoes", "sneaker", "boot", "sandal"],
    "Digital_Video_Download": ["movie", "episode", "series", "film"],
    "Automotive": ["floor mat", "car charger", "wiper blade", "seat cover"],
    "Electronics": ["speaker", "camera", "tv", "headphone", "remote"],
    "Pet Products": ["dog bed", "cat toy", "leash", "litter box"],
    "Office Products": ["printer", "stapler", "notebook", "desk chair", "pen"],
    "Home Improvement": ["drill", "light bulb", "faucet", "paint"],
    "Lawn and Garden": ["hose", "lawn mower", "planter", "bird feeder"],
    "Grocery": ["coffee", "tea", "snack", "olive oil"],
    "Outdoors": ["backpack", "sleeping bag", "flashlight", "hammock"],
    "Camera": ["lens", "tripod", "memory card", "camera bag"],
    "Video Games": ["game", "controller", "console", "headset"],
    "Jewelry": ["necklace", "ring", "bracelet", "pair of earrings"],
    "Baby": ["stroller", "car seat", "bottle", "diaper bag"],
    "Tools": ["wrench", "screwdriver", "saw", "tool kit"],
    "Digital_Music_Purchase": ["song", "album", "track"],
    "Watches": ["watch", "watch band", "smartwatch"],
    "Musical Instruments": ["guitar", "keyboard", "microphone", "drum set"],
    "Furniture": ["chair", "desk", "bookshelf", "sofa"],
    "Home Entertainment": ["soundbar", "projector", "tv mount"],
    "Video": ["vhs tape", "video", "movie"],
    "Luggage": ["suitcase", "carry-on", "duffel bag"],
    "Software": ["software", "antivirus", "program", "license"],
    "Gift Card": ["gift card", "card"],
    "Digital_Video_Games": ["game", "download", "expansion"],
    "Mobile_Electronics": ["car stereo", "gps", "dash cam"],
    "Digital_Software": ["software", "download", "subscription"],
    "Major Appliances": ["refrigerator", "washer", "dryer", "dishwasher"],
    "Personal_Care_Applications": ["app", "tracker"],
}

BRANDS = ["Acme", "Zenith", "Nova", "Apex", "Orion", "Vertex", "Summit", "Pioneer", "Lumen",
          "Kestrel", "Harbor", "Everest", "Maple", "Granite", "Solace", "Atlas", "Quill", "Brio"]
TITLE_ADJECTIVES = ["Deluxe", "Classic", "Premium", "Compact", "Portable", "Professional",
                    "Ultra", "Essential", "Wireless", "Original", "Advanced", "Eco"]

# Approximate review counts per category in the public US dataset, in millions (weights).
CATEGORY_WEIGHTS: dict[str, float] = {
    "Books": 10.3, "Digital_Ebook_Purchase": 17.6, "Wireless": 9.0, "PC": 7.0, "Home": 6.2,
    "Apparel": 5.9, "Health & Personal Care": 5.3, "Beauty": 5.1, "Video DVD": 5.1,
    "Mobile_Apps": 5.0, "Kitchen": 4.9, "Toys": 4.9, "Sports": 4.9, "Music": 4.8,
    "Shoes": 4.4, "Digital_Video_Download": 4.1, "Automotive": 3.5, "Electronics": 3.1,
    "Pet Products": 2.6, "Office Products": 2.6, "Home Improvement": 2.6,
    "Lawn and Garden": 2.6, "Grocery": 2.4, "Outdoors": 2.3, "Camera": 1.8,
    "Video Games": 1.8, "Jewelry": 1.8, "Baby": 1.8, "Tools": 1.7,
    "Digital_Music_Purchase": 1.7, "Watches": 0.96, "Musical Instruments": 0.9,
    "Furniture": 0.79, "Home Entertainment": 0.71, "Video": 0.38, "Luggage": 0.35,
    "Software": 0.34, "Gift Card": 0.15, "Digital_Video_Games": 0.15,
    "Mobile_Electronics": 0.1, "Digital_Software": 0.1, "Major Appliances": 0.1,
    "Personal_Care_Applications": 0.09,
}

# Star rating shares of the public dataset (about 60% fives).
STAR_SHARES = (0.08, 0.05, 0.08, 0.18, 0.61)
