# Type stubs for the part of aiokafka (Faust's Kafka client) this project uses: its error
# classes. aiokafka ships no type information; these mirror aiokafka/errors.py.
