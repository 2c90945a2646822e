"""Train a student: `python train.py dataset=anli k=5` (see conf/train.yaml)."""

from kdlight.commands.cli import main

if __name__ == "__main__":
    main()
