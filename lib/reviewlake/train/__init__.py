"""The train stage: a Keras DistilBERT classifier of star_rating with Horovod all-reduce.

``spec.TrainSpec`` holds every option; ``worker.train(spec)`` is the function each Horovod
process runs (whatever started it: horovodrun, horovod.spark.run, SageMaker's MPI launcher,
or a plain single process); ``launch`` starts those processes; ``predict`` serves the result.
TensorFlow is imported lazily so the package can be imported where only Spark is installed.
"""
