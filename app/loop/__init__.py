"""The closed loop's steps: Generator, Ingester, off-policy Trainer and Deployer."""
