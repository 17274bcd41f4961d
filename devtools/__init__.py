"""Development tools: run the function the way Lambda does, on this machine, without Docker.

    rie.py        the official Runtime Interface Emulator (RIE) in front of ``python -m awslambdaric``
    moto_sqs.py   a moto server on 127.0.0.1 and the input / dead-letter / results queues
    esm.py        an SQS event source mapping: receive -> invoke -> delete what succeeded

Nothing here ships in the image, and nothing under ``runtime/`` imports it. Importing this package
imports nothing heavy; boto3 is imported by the modules that talk to SQS.
"""
