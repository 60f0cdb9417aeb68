"""reviewlake: product reviews from a data lake to a trained, distributed text classifier.

The package lives in lib/reviewlake. The YAML profiles of conf/ are copied into the package
(reviewlake/conf/) at build time so an installed wheel finds its defaults.

Horovod is not an install_requires: it must be built from source against the installed
TensorFlow with the right flags (`make setup` does it and caches the wheel).
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
VERSION = {}
exec((HERE / "lib" / "reviewlake" / "__init__.py").read_text(), VERSION)


class BuildWithProfiles(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "reviewlake" / "conf"
        target.mkdir(parents=True, exist_ok=True)
        for profile in [*(HERE / "conf").glob("*.yaml"), HERE / "conf" / "log4j2.properties"]:
            shutil.copy2(profile, target / profile.name)


# The whole stack, pinned (see README "Stack"). pyspark is an extra because clusters (EMR,
# SageMaker Spark containers) bring their own.
EXTRAS = {
    "spark": ["pyspark==3.5.9"],
    "quality": ["pydeequ==1.7.0"],
    "features": ["transformers==4.57.6", "tokenizers==0.22.2"],
    "train": ["tensorflow-cpu==2.15.1", "transformers==4.57.6", "tokenizers==0.22.2",
              "matplotlib==3.11.2"],
    "aws": ["boto3==1.44.5", "sagemaker==3.27.0"],
    "dev": ["pytest==9.2.0", "moto[server]==5.2.5"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="reviewlake",
    version=VERSION["__version__"],
    description="Product reviews from a data lake to a trained, distributed text classifier",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    package_data={"reviewlake.launch": ["*.sh"]},  # the EMR bootstrap action
    install_requires=[
        "numpy==1.26.4",
        "pandas>=2.2,<4",
        "pyarrow>=14",
        "PyYAML>=6",
        "crc32c>=2.4",
        "protobuf>=3.20,<5",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["reviewlake=reviewlake.cli:main"]},
    cmdclass={"build_py": BuildWithProfiles},
)
