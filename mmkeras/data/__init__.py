"""Reading and making data; no model is built here.

shapes (draws Shapes Captions and reads its captions back) -> folder (the Flickr8k layouts)
-> flickr8k, download, coco -> catalog (one dispatcher from a name or folder to splits);
text (captions to ids), images (decode, resize), pairs (image and caption batches),
feature_cache (a frozen backbone's features on disk).
"""
