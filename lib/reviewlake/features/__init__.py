"""The prepare stage (``reviewlake prepare``): the lake -> features for training.

* :mod:`.splits`    clean, deduplicate, balance and split (DataFrame -> DataFrame)
* :mod:`.tokenizer` a saved Hugging Face tokenizer directory, or a trained WordPiece
* :mod:`.encode`    BERT features, vectorised over Arrow batches (mapInArrow, or a pandas UDF)
* :mod:`.tfrecord`  tf.train.Example and TFRecord files without TensorFlow
* :mod:`.write`     TFRecords per split: the spark-tfrecord jar, or a Python writer
* :mod:`.job`       :func:`~.job.run_prepare`, the whole stage; :mod:`.cli` its command
"""
