"""Entry script of the SageMaker training job (`reviewlake launch sagemaker --stage train`).

The job's launcher (jobs/sagemaker_launch.py) runs it once per process under mpirun
(`mpirun -np hosts x processes_per_host ... python sagemaker_train.py --epochs 3 ...`).
The packaged library travels next to it as reviewlake-<version>.zip; the work is done
by reviewlake.launch.sagemaker_train (channels -> features, then the same training
function every other launcher runs)."""
import glob
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
for bundle in sorted(glob.glob(os.path.join(here, "reviewlake-*.zip"))):
    sys.path.insert(0, bundle)
try:
    from reviewlake.launch.sagemaker_train import main
except ImportError:  # a source checkout without the package installed
    sys.path.insert(0, os.path.join(here, "..", "lib"))
    from reviewlake.launch.sagemaker_train import main

if __name__ == "__main__":
    sys.exit(main())
