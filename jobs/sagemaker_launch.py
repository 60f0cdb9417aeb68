"""Entry of the SageMaker training job (`reviewlake launch sagemaker --stage train`), once per
instance: the leader runs `mpirun -np hosts x processes_per_host ... sagemaker_train.py`, the
other instances serve its ssh (reviewlake.launch.sagemaker_mpi says why not the SDK's MPI
driver). The packaged library travels next to it as reviewlake-<version>.zip."""
import glob
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
for bundle in sorted(glob.glob(os.path.join(here, "reviewlake-*.zip"))):
    sys.path.insert(0, bundle)
try:
    from reviewlake.launch.sagemaker_mpi import main
except ImportError:  # a source checkout without the package installed
    sys.path.insert(0, os.path.join(here, "..", "lib"))
    from reviewlake.launch.sagemaker_mpi import main

if __name__ == "__main__":
    sys.exit(main(here=here))
