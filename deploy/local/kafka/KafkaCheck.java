// Readiness probe for the local Kafka broker, used by deploy/local/kafka.sh.
//
//   java -cp '<libs>/*:<classes>' KafkaCheck 127.0.0.1:9092 [timeoutMs]
//
// Connects with the Kafka AdminClient (which bootstraps with a Metadata request)
// and asks for the cluster's nodes (DescribeCluster). Prints
// "<cluster-id> <node-count>" and exits 0 when the broker answers, exits 1
// otherwise. Only needs kafka-clients on the classpath.
import java.util.Collection;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

public final class KafkaCheck {
    public static void main(String[] args) {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
        int timeoutMs = args.length > 1 ? Integer.parseInt(args[1]) : 5000;

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "qi-local-kafka-check");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);

        int exitCode;
        try (Admin admin = Admin.create(props)) {
            DescribeClusterResult cluster = admin.describeCluster();
            Collection<Node> nodes = cluster.nodes().get(timeoutMs, TimeUnit.MILLISECONDS);
            String clusterId = cluster.clusterId().get(timeoutMs, TimeUnit.MILLISECONDS);
            if (nodes.isEmpty()) {
                System.err.println("kafka-check: broker answered but reported no nodes");
                exitCode = 1;
            } else {
                System.out.println(clusterId + " " + nodes.size());
                exitCode = 0;
            }
        } catch (Exception e) {
            System.err.println("kafka-check: " + bootstrap + " not ready: " + e);
            exitCode = 1;
        }
        System.exit(exitCode);
    }
}
