"""Every Celery task, one module per queue; each task is a thin shell around plain functions in `worker/`.

- `radbatch-u0` … `radbatch-u7` (one per user shard; a job's lane is its messages' priority): `worker.tasks.predict`
  (`radbatch.predict_batch`), run by the prediction worker (`worker.celery_app`)
- `radbatch-notify`: `worker.tasks.notify` (`radbatch.notify_job`), run by the prediction worker as well
- `radbatch-forward`: `worker.tasks.forward` (`radbatch.forward_sr`), run by the forwarding worker
  (`worker.forwarder`), which loads no models
- `radbatch-fhir`: `worker.tasks.fhir` (`radbatch.forward_fhir`), and `radbatch-hl7`: `worker.tasks.hl7`
  (`radbatch.forward_hl7`), run by the forwarding worker as well

The queue names, task names and routes are the contract in `broker`.
"""
