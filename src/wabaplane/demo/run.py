"""`wabaplane dev`: set up, play the scenario, show the table, keep running until Ctrl-C, clean up."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import AsyncExitStack

from wabaplane.demo.kubectl import DemoError
from wabaplane.demo.scenario import ACME_CUSTOMER, GRAPH_VERSION, Scenario, report_table
from wabaplane.demo.stack import Options, Stack

INTERRUPTED = 130


def say(message: str) -> None:
    print(message, flush=True)


async def run(options: Options, once: bool) -> int:
    """The exit code: 0 when every step passed (and, without --once, after Ctrl-C)."""
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    interrupted: list[int] = []

    def on_signal(number: int) -> None:
        if interrupted:
            say("Still cleaning up; it stops everything it started before exiting")
            return
        interrupted.append(number)
        main_task.cancel()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    stack = Stack(options, say)
    try:
        async with AsyncExitStack() as exits:
            try:
                await stack.start(exits)
                say("\nPlaying the scenario")
                steps = await Scenario(stack).run()
            except DemoError as error:
                stack.failed = True
                say(f"\nThe demo could not go on: {error}")
                return 1
            say(report_table(steps))
            passed = all(step.passed for step in steps)
            stack.failed = not passed
            say("Every step passed." if passed else "Some steps FAILED: see the Observed column.")
            if once:
                return 0 if passed else 1
            say(instructions(stack))
            await asyncio.Event().wait()  # until Ctrl-C
            return 0
    except asyncio.CancelledError:
        if not interrupted:
            raise
        return INTERRUPTED
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def instructions(stack: Stack) -> str:
    urls, namespace = stack.urls, stack.namespace
    key = f"kubectl get secret -n {namespace} acme-api-key -o jsonpath='{{.data.api-key}}' | base64 -d"
    send = f'{{"messaging_product":"whatsapp","to":"{ACME_CUSTOMER}","type":"text","text":{{"body":"Hello again"}}}}'
    inbound = f'{{"phone_number_id":"106540352242922","from":"{ACME_CUSTOMER}","text":"Hi again"}}'
    return f"""
wabaplane is running. Press Ctrl-C to stop it and clean up everything the demo started.

  gateway    {urls["gateway"]}   (Meta's webhook: {urls["gateway"]}/webhook, metrics: {urls["gateway"]}/metrics)
  emulator   {urls["emulator"]}   (Meta's Graph API; control API under /_emulator/)
  receivers  {urls["receivers"]}/acme and /globex   (the tenants' webhook endpoints)
  logs       {stack.run_dir}

Try:
  export KUBECONFIG={stack.kube.kubeconfig}
  kubectl get tenants,phonenumbers,messagetemplates -n {namespace}
  KEY=$({key})
  # a customer writes to acme, then acme answers through the gateway
  curl -s {urls["emulator"]}/_emulator/inbound -H 'Content-Type: application/json' -d '{inbound}'
  curl -s {urls["gateway"]}/{GRAPH_VERSION}/106540352242922/messages -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' -d '{send}'
  curl -s {urls["gateway"]}/v1/conversations -H "Authorization: Bearer $KEY"
  curl -s {urls["gateway"]}/v1/usage -H "Authorization: Bearer $KEY"
  curl -s {urls["gateway"]}/v1/deliveries -H "Authorization: Bearer $KEY"
  curl -s {urls["gateway"]}/metrics | grep wabaplane_gateway_units_total
  kubectl patch tenant acme -n {namespace} --type=merge -p '{{"spec":{{"suspended":true}}}}'
"""


def main(options: Options, once: bool) -> None:
    sys.exit(asyncio.run(run(options, once)))
