"""The JVM libraries reviewlake runs with, as Maven coordinates.

``jars/jars.txt`` pins the same coordinates with their checksums for ``jars/fetch.sh`` (the
set-up); the cluster profiles (``conf/emr.yaml``, ``conf/sagemaker.yaml``) list them under
``spark.packages``. A test keeps the three in agreement.
"""
DEEQU = "com.amazon.deequ:deequ:2.1.0-spark-3.5"
TFRECORD = "com.linkedin.sparktfrecord:spark-tfrecord_2.12:0.7.0"
HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.3.4"
AWS_SDK_BUNDLE = "com.amazonaws:aws-java-sdk-bundle:1.12.262"
ICEBERG = "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.1"
ICEBERG_AWS = "org.apache.iceberg:iceberg-aws-bundle:1.10.1"   # Glue catalog, S3FileIO
SQLITE_JDBC = "org.xerial:sqlite-jdbc:3.51.1.0"                 # the embedded catalog

ALL = (DEEQU, TFRECORD, HADOOP_AWS, AWS_SDK_BUNDLE, ICEBERG, ICEBERG_AWS, SQLITE_JDBC)
# What a cluster resolves with --packages (EMR and SageMaker bring their own S3 file systems;
# their lakes use the Glue catalog, so no SQLite driver).
CLUSTER_PACKAGES = (DEEQU, TFRECORD, ICEBERG, ICEBERG_AWS)


def jar_name(coordinate: str) -> str:
    """The file name Maven gives the jar of ``group:artifact:version``."""
    _, artifact, version = coordinate.split(":")
    return f"{artifact}-{version}.jar"
