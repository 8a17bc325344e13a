"""Reading and making data; no model is built here.

folder (the Flickr8k layouts: any captioned image folder) is read by all the rest: shapes
(draws Shapes Captions and reads its captions back), flickr8k and download, coco, and
catalog (the one way from a dataset's name or folder to its splits); text (captions to
ids), images (decode, resize), pairs (image and caption batches for training),
feature_cache (a frozen backbone's features on disk); spoken (Spoken Shapes: the captions
spoken by eSpeak NG, through espeak, and read back).
"""
