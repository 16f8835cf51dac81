"""`radbatch`: upload a folder of chest X-rays to a radbatch server, follow a job, fetch its results.

Exit status: 0 when everything went through; 1 when any file failed (not sent, refused, or failed in the
worker) or the job did not finish as done; 2 for bad usage; 3 when the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from cli.client import ApiError, Client, ServerUnavailable
from cli.files import walk
from cli.upload import (
    failed_rows,
    send_files,
    still_to_send,
    stored_files,
    summary_lines,
    wait_for_predictions,
)

DEFAULT_URL = "http://127.0.0.1:5000"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


class UsageError(Exception):
    pass


def _client(args: argparse.Namespace) -> Client:
    token = args.token or os.environ.get("RADBATCH_TOKEN", "")
    if not token:
        raise UsageError(f"no API token: pass --token or set RADBATCH_TOKEN (create one at {args.url}/account/tokens)")
    return Client(args.url, token, attempts=args.retries + 1, on_retry=_say)


def _write_csv(client: Client, job_id: int, target: str, status: str | None) -> None:
    response = client.results_csv(job_id, **({"status": status} if status else {}))
    response.raw.decode_content = True
    if target == "-":
        shutil.copyfileobj(response.raw, sys.stdout.buffer)
        sys.stdout.flush()
        return
    with open(target, "wb") as out:
        shutil.copyfileobj(response.raw, out)
    _say(f"results written to {target}")


def upload(args: argparse.Namespace) -> int:
    client = _client(args)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    files = walk(folder)
    if not files:
        raise UsageError(f"{folder} holds no files (hidden files are skipped)")
    if args.resume:
        job = client.job(args.resume)
        if not job["is_open"]:
            raise UsageError(f"job {args.resume} is {job['status']} and closed; it cannot take more files")
        before = len(files)
        files = still_to_send(files, stored_files(client, args.resume))
        _say(f"resuming job {args.resume}: {before - len(files)} of {before} files already stored")
        job_id = args.resume
    else:
        job_id = client.create_job(args.name or folder.resolve().name, args.heatmaps, args.priority)["id"]
        _say(f"job {job_id}: sending {len(files)} files from {folder}")
    result = send_files(client, job_id, files, max_file_bytes=args.max_file_mb * 2**20)
    if result.stopped:
        print("\n".join(summary_lines(None, result, [])))
        return FAILED
    waited = bool(args.wait or args.results)
    job = wait_for_predictions(client, job_id) if waited else client.job(job_id)
    failed = failed_rows(client, job_id) if job["failed"] else []
    if args.results:
        _write_csv(client, job_id, args.results, None)
    print("\n".join(summary_lines(job, result, failed)))
    finished_well = job["status"] == "done" or not waited
    return OK if finished_well and not (result.not_sent or failed) else FAILED


def status(args: argparse.Namespace) -> int:
    job = _client(args).job(args.job)
    if args.json:
        print(json.dumps(job, indent=2))
        return OK
    print(f"job {job['id']} ({job['name']}): {job['status']}{' (receiving files)' if job['is_open'] else ''}")
    print(f"  {job['done'] + job['failed']} of {job['total']} processed, {job['failed']} failed")
    print(f"  created {job['created_at']}" + (f", finished {job['finished_at']}" if job["finished_at"] else ""))
    return OK


def results(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.csv is not None:
        _write_csv(client, args.job, args.csv, args.status)
        return OK
    for row in client.results(args.job, **({"status": args.status} if args.status else {})):
        print(json.dumps(row, ensure_ascii=False))
    return OK


def pull(args: argparse.Namespace) -> int:
    """Ask the server to retrieve studies from a PACS it knows (RADBATCH_DICOM_SOURCES) into a new job."""
    query = {"AccessionNumber": args.accession, "StudyDate": args.date, "Modality": args.modality}
    query = {key: value for key, value in query.items() if value}
    if "AccessionNumber" not in query and "StudyDate" not in query:
        raise UsageError("pull needs --accession or --date FROM-TO (YYYYMMDD-YYYYMMDD)")
    body = {"source": args.source, "query": query} | ({"max_studies": args.max_studies} if args.max_studies else {})
    client = _client(args)
    answer = client.request("POST", f"{client.api}/retrievals", json=body).json()
    retrieval, job = answer["retrieval"], answer["job"]
    _say(f"retrieving {retrieval['studies']} studies from {args.source} into job {job['id']}")
    print(job["id"])
    if not args.wait:
        return OK
    job = wait_for_predictions(client, job["id"])
    retrieval = client.get_json(f"/retrievals/{retrieval['id']}")["retrieval"]
    if retrieval["status"] == "failed":
        _say(f"retrieval failed at {retrieval['failed_step']}: {retrieval['error']}")
        return FAILED
    _say(f"job {job['id']}: {job['done']} predicted, {job['failed']} failed, {retrieval['instances']} instances")
    return OK if job["status"] == "done" else FAILED


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("RADBATCH_URL", DEFAULT_URL), help="server (env RADBATCH_URL)")
    common.add_argument("--token", help="API token (default: env RADBATCH_TOKEN)")
    common.add_argument("--retries", type=int, default=4, help="retries per request on network errors and 5xx")
    parser = argparse.ArgumentParser(
        prog="radbatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser("upload", parents=[common], help="upload a folder as one job")
    send.add_argument("folder")
    send.add_argument("--name", help="job name (default: the folder's name)")
    send.add_argument("--wait", action="store_true", help="wait until every image is predicted")
    send.add_argument("--results", metavar="FILE", help="wait, then write the results as CSV to FILE")
    send.add_argument("--resume", type=int, metavar="JOB", help="add to open job JOB what it does not hold yet")
    send.add_argument("--max-file-mb", type=int, default=64, help="larger files are listed as failed, not sent")
    send.add_argument(
        "--heatmaps",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw Grad-CAM heat maps for the job, or not (default: the server's RADBATCH_HEATMAPS)",
    )
    send.add_argument(
        "--priority",
        choices=("urgent", "normal", "bulk"),
        default="normal",
        help="the job's lane: workers take urgent batches first, then normal, then bulk (default: normal)",
    )
    send.set_defaults(run=upload)

    show = commands.add_parser("status", parents=[common], help="a job's progress")
    show.add_argument("job", type=int)
    show.add_argument("--json", action="store_true", help="the API's JSON")
    show.set_defaults(run=status)

    fetch = commands.add_parser("results", parents=[common], help="a job's results (JSON lines, or --csv)")
    fetch.add_argument("job", type=int)
    fetch.add_argument("--csv", nargs="?", const="-", metavar="FILE", help="CSV to FILE (default: standard output)")
    fetch.add_argument("--status", help="only images in this status (pending, queued, done, failed, cancelled)")
    fetch.set_defaults(run=results)

    get = commands.add_parser("pull", parents=[common], help="retrieve studies from a PACS into a new job")
    get.add_argument("--source", required=True, help="a PACS the server knows (RADBATCH_DICOM_SOURCES)")
    get.add_argument("--accession", help="the study's accession number")
    get.add_argument("--date", help="study dates FROM-TO, YYYYMMDD-YYYYMMDD (or one day YYYYMMDD)")
    get.add_argument("--modality", help="only studies with this modality (e.g. DX)")
    get.add_argument("--max-studies", type=int, help="allow more matches than the server's limit (500)")
    get.add_argument("--wait", action="store_true", help="wait until every retrieved image is predicted")
    get.set_defaults(run=pull)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        parser.exit(USAGE, f"radbatch: {error}\n")
    except ApiError as error:
        print(f"radbatch: the server refused the request ({error.status}): {error.message}", file=sys.stderr)
        return FAILED
    except ServerUnavailable as error:
        print(f"radbatch: {error}", file=sys.stderr)
        return UNREACHABLE
    except KeyboardInterrupt:
        print("radbatch: interrupted", file=sys.stderr)
        return 130
    return OK


if __name__ == "__main__":
    sys.exit(main())
