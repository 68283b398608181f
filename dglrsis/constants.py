"""Constants shared by the training-free core, the trainable models and the world-clip trainer."""

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP pixel normalisation (OpenAI, open_clip default)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINO-family pixel normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
