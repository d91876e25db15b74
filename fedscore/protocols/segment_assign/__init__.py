"""New users into the personas of a trained vertical segmentation, in one private assignment round.

Spec: ``protocols/segment_vertical.md``, *Assigning new users with a trained model*.
"""
