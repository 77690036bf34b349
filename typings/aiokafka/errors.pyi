# The aiokafka error classes the routing agent tells apart (see processors/agents/route.py).

class KafkaError(RuntimeError):
    retriable: bool
    invalid_metadata: bool

class KafkaTimeoutError(KafkaError): ...
class RecordTooLargeError(KafkaError): ...

class BrokerResponseError(KafkaError):
    errno: int
    message: str
    description: str

class MessageSizeTooLargeError(BrokerResponseError): ...
