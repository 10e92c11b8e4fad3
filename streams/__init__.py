"""The live control loop: Faust agents, tables and the controller tick.

Streams import the `tokenpools` core and meet `connectors` only on Kafka topics.
"""
