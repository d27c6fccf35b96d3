"""The SageMaker target (SPEC section 8): the code that runs inside SageMaker, and the
pipeline definition that runs it.

`train` is the training job's entry point, `inference` the model server's
(`model_fn`/`input_fn`/`predict_fn`/`output_fn`), `lambda_handler` the deploy step's
create-or-update handler, `metrics` the log lines the training job prints and the
regexes SageMaker reads them with. All of them are custseg's own code: the same schema
inference, transforms, choice of k, artifact and wire format as the local pipeline.
"""
