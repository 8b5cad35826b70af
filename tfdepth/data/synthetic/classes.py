"""The semantic class table shared by every synthetic preset.

One table for ``street`` and ``room`` so that a model trained on a mix of presets sees consistent label ids.
Index 0 means "no surface" (the sky of the street preset); it is also the label of pixels whose depth is 0.
"""

CLASS_NAMES = (
    "sky",  # 0: no surface hit (depth 0)
    "road",  # 1
    "sidewalk",  # 2
    "building",  # 3
    "car",  # 4
    "pole",  # 5
    "vegetation",  # 6
    "floor",  # 7
    "wall",  # 8
    "ceiling",  # 9
    "furniture",  # 10
    "object",  # 11
)

SKY, ROAD, SIDEWALK, BUILDING, CAR, POLE, VEGETATION, FLOOR, WALL, CEILING, FURNITURE, OBJECT = range(len(CLASS_NAMES))

# What a VOC-style segmenter calls foreground ("things", not "stuff"): cars outdoors, furniture and small objects
# indoors. Used to build the 2-class masks of the segmentation-guided model.
FOREGROUND_CLASS_IDS = (CAR, FURNITURE, OBJECT)

__all__ = ["CLASS_NAMES", "FOREGROUND_CLASS_IDS"]
