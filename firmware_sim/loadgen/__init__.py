"""Load generator: thousands of simulated store boxes in one process (issue 16,
decision 0057).

``firmware_sim.fleet`` runs the production agent per box: right for a hundred boxes,
too heavy for 5,000. Here each store is only what the cloud sees of a box, on the wire
the real agent uses (``edge_agent/uplink/``): its own MQTT connection (aiomqtt) with its
own client id and credentials, a retained birth with a rising ``bd_seq`` and the Last
Will death, QoS 1 events from a small in-memory outbox that keeps every event until the
cloud acknowledges it (decision 0028) and sends it again after a reconnect, telemetry at
QoS 0, and answers to commands on ``cmd-res``. Traffic: sales with baskets priced by
``pricing`` under the store's published promotion snapshot (so the cloud's re-pricing
audit agrees), vends, coupons issued, device alarms.

    fleet = LoadFleet(identities("S", 500, broker=addr), rate_per_store=0.2,
                      snapshots=SnapshotSource(api_url, token))
    await fleet.run(stop)          # fleet.storm() drops every connection at once

Files: ``identity`` (who a store is on the broker), ``outbox``, ``traffic`` (what a
store sends), ``snapshots`` (promotion snapshots for pricing, shared by hash),
``store`` (one store's sessions), ``fleet`` (many stores, the rate, storms, status),
``cli`` (``storefleet sim fleet``).
"""
