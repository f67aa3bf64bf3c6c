"""Text banks of the persona organism corpus: questions, reply sentences, persona descriptions and Likert
items. All text in these modules was written for traitlab; placeholders look like ``{slot}``."""
